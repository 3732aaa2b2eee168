"""TensorBoard events of every routine, read back with TensorBoard's own reader and checked against history.csv."""

from collections.abc import Callable

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from config.overrides import ROUTINES
from utils.tracking.tensorboard import TensorBoardLogger


@pytest.mark.parametrize("routine", ROUTINES)
def test_events_match_history_with_the_same_tags_in_every_routine(routine: str, shared_run: Callable) -> None:
    result = shared_run(routine)[0]  # the tiny config keeps TENSORBOARD on
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    history = pd.read_csv(result.run_dir / "history.csv")
    tags = events.Tags()
    # Exactly these tags, whatever the routine: runs of different routines overlay in one TensorBoard.
    assert set(tags["scalars"]) == {
        "loss/train",
        "loss/val",
        "metrics/val_dice",
        "metrics/val_dice_pooled",
        "metrics/val_iou",
        "metrics/val_iou_pooled",
        "lr",
        "loss/train_step",
    }
    for tag, column in (
        ("loss/train", "train_loss"),
        ("loss/val", "val_loss"),
        ("metrics/val_dice", "val_dice"),
        ("lr", "lr"),
    ):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == history["epoch"].tolist()
        assert [s.value for s in scalars] == pytest.approx(history[column].tolist(), rel=1e-6)
    steps = events.Scalars("loss/train_step")
    assert len(steps) == 2 * 4  # 2 epochs of 32 training samples in batches of 8
    assert set(tags["images"]) == {"inputs", "predictions"}
    assert tags["graph"] and any("Conv2d" in node.op or "conv" in node.op for node in events.Graph().node)
    inputs = events.Images("inputs")[0]
    assert inputs.height == 32 and inputs.width == 8 * 2 * 32  # the first batch of 8, each input | mask
    image = events.Images("predictions")[-1]
    assert image.height == 32 and image.width == 4 * 3 * 32  # 4 samples, each input | mask | prediction


def test_tensorboard_logs_multiclass_predictions(tmp_path):
    """A multiclass run's TensorBoard images: RGB panels input | mask | prediction for each sample."""
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    logger = TensorBoardLogger(tmp_path, task="multiclass")
    logger.log_inputs(torch.rand(2, 12, 8, 8), target)
    logger.log_predictions(1, torch.rand(2, 12, 8, 8), target, logits)
    logger.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Images("inputs")[0].width == 2 * 2 * 8 and events.Images("predictions")[0].width == 2 * 3 * 8
