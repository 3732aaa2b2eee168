"""Undefined metrics in a run: every routine logs the same exact means on the issue's 10-tile example, an epoch whose
checkpoint metric is NaN is not best and counts against early stopping, a NaN loss still fails, and a checkpoint
metric whose class never occurs in the validation set is refused before training."""

import importlib
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_metric_sums import empty_tiles_example
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.serialize import ConfigError
from training.run import Run


class Oracle(nn.Module):
    """A model whose logits are its image's first band, scaled: it predicts what the image draws."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 1, H, W]``: the first band times the scale."""
        return images[:, :1] * self.scale


def validation_values(routine: str, run: Run) -> dict[str, float]:
    """The val_* columns of one validation pass, through the routine's own evaluation code."""
    module = importlib.import_module(f"training.{routine}_training")
    if routine == "pytorch":
        return module.evaluate(run)
    if routine == "ignite":
        metrics = module.create_evaluator(run).run(run.val_loader).metrics
        return {"val_loss": metrics["val_loss"], **metrics["val"]}
    learn = module.build_learner(run)
    with learn.no_logging():
        learn.validate(dl=run.val_loader)
    return {"val_loss": float(learn.recorder.loss.value), **run.metric_values()}


@pytest.mark.parametrize("routine", ROUTINES)
def test_every_routine_logs_the_object_tiles_dice_not_the_empty_tiles(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiles = empty_tiles_example(false_positive=False)
    logits, target = torch.cat([t[0] for t in tiles]), torch.cat([t[1] for t in tiles])
    run = Run(tiny_config, global_config, routine)
    run.raw_model = run.model = Oracle()  # the model predicts the image: the tiles' predictions are the example's
    run.val_loader = DataLoader(TensorDataset(logits, target), batch_size=4)  # batches of 4, 4 and 2
    val = validation_values(routine, run)
    run.finish()
    assert val["val_dice"] == pytest.approx(36 / 98, abs=1e-6)  # the one object's dice; the old rule read 0.937
    assert val["val_dice_pooled"] == pytest.approx(36 / 98, abs=1e-6)
    assert val["val_iou"] == pytest.approx(18 / 80, abs=1e-6) and val["val_iou_pooled"] == pytest.approx(18 / 80)


def test_an_undefined_checkpoint_metric_is_never_best_and_counts_against_patience(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    """Epochs of val_dice NaN, 0.5, NaN, NaN with patience 2: epoch 1 keeps no best.pt, epoch 2 is best, the run stops
    after epoch 4; the NaN is written in history.csv. A NaN loss still fails the epoch."""
    tiny_config.update(EARLY_STOPPING={"patience": 2, "min_delta": 0.0}, EPOCHS=5)
    run = Run(tiny_config, global_config, "pytorch")
    weights = run.recorder.weight_dir
    stops = []
    with run.guard():
        for epoch, value in enumerate([math.nan, 0.5, math.nan, math.nan], start=1):
            run.begin_epoch(epoch)
            val = {"val_loss": 0.3, "val_dice": value, "val_dice_pooled": value, "val_iou": 0.1, "val_iou_pooled": 0.1}
            stops.append(run.end_epoch(epoch, 0.4, val))
            if epoch == 1:
                assert (weights / "last.pt").is_file() and not (weights / "best.pt").exists()
        assert stops == [False, False, False, True] and run.best_epoch == 2 and run.best_value == 0.5
        with pytest.raises(FloatingPointError, match="val_loss is nan at epoch 5"):
            run.end_epoch(5, 0.4, {**val, "val_loss": math.nan})
    history = pd.read_csv(run.recorder.history_csv)
    assert history["val_dice"].isna().tolist() == [True, False, True, True]
    assert "val_dice,val_dice_pooled" in run.recorder.history_csv.read_text() and ",nan," in (
        run.recorder.history_csv.read_text()
    )
    assert torch.load(weights / "best.pt", weights_only=True)["epoch"] == 2
    run.finish()


def five_classes(tiny_config: dict) -> dict:
    """SyntheticShapes with five classes, of which the fifth never occurs (it draws classes 1..3)."""
    tiny_config.update(TASK="multiclass", CLASSES=["a", "b", "c", "d", "e"])
    tiny_config["MODEL_CONFIG"].update(out_channels=5)
    tiny_config["DATASET_CONFIG"].update(num_classes=5, n_samples=16)
    return tiny_config


def test_a_checkpoint_metric_that_is_never_defined_is_refused_before_training(
    tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = five_classes(tiny_config)
    config["CHECKPOINT_METRIC"] = "val_dice_e"
    with pytest.raises(ConfigError, match="CHECKPOINT_METRIC val_dice_e is never defined: .* no pixel of e"):
        Run(config, global_config, "pytorch")
    assert not global_config.LOG_DIR.exists()  # nothing written
    config["CHECKPOINT_METRIC"] = "val_dice_pooled"  # a mean over classes: some occur; e is warned about
    result = importlib.import_module(f"training.{ROUTINES[0]}_training").train({**config, "EPOCHS": 1}, global_config)
    assert result.status == "completed"
    assert "class(es) e never occur in the validation set" in caplog.text
    history = pd.read_csv(Path(result.run_dir) / "history.csv")
    never = history["val_dice_e"]  # NaN where e is not predicted either, 0 where it is: never a score
    assert (never.isna() | (never == 0)).all() and history["val_dice"].notna().all()
