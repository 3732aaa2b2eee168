"""What notebooks/explore_runs.ipynb shows of the best run: its config, validation samples, predictions and the grid.

Read from a finished run's own files, as the notebook reads them (the template's tests run the notebook itself).
"""

import json
from collections.abc import Callable

import pandas as pd
import pytest
import torch

from config.overrides import ROUTINES
from utils.data.synthetic import SyntheticShapes
from utils.metrics import dice
from utils.prediction import load_predictor
from utils.tracking import explore
from utils.tracking.colours import legend_colours
from utils.tracking.report_table import ReportError


@pytest.fixture(name="finished")
def fixture_finished(shared_run: Callable) -> tuple:
    """A finished tiny run: its result, folders, experiments table and predictor."""
    result, folders = shared_run("pytorch" if "pytorch" in ROUTINES else ROUTINES[0])
    table = pd.read_csv(folders.LOG_DIR / "experiments.csv")
    return result, folders, table, load_predictor(result.weight_dir / "best.pt", torch.device("cpu"))


def test_the_validation_samples_are_those_validation_scored(finished: tuple) -> None:
    result, folders, table, predictor = finished
    run_name, weights = explore.best_checkpoint(table, folders.WEIGHT_DIR)
    assert (run_name, weights) == (result.run_name, result.weight_dir / "best.pt")
    config = explore.run_config(folders.LOG_DIR, run_name)
    saved = json.loads((result.run_dir / "config.json").read_text(encoding="utf-8"))["config"]
    assert config["EPOCHS"] == saved["EPOCHS"] == 2
    assert config["DATASET"] is SyntheticShapes  # classes rebuilt from their names

    samples = explore.validation_samples(config, predictor.stats, count=3)
    assert len(samples) == 3
    assert all(image.shape == (1, 32, 32) and target.shape == (1, 32, 32) for image, target in samples)
    logits = explore.predict_samples(predictor, samples)
    assert [tuple(item.shape) for item in logits] == [(1, 1, 32, 32)] * 3
    # The whole-image pass is the model's own forward pass (32 divides by its divisor: no padding).
    with torch.no_grad():
        torch.testing.assert_close(logits[0], predictor.model(samples[0][0][None]))
    # All of the validation set when it holds fewer samples than asked (8 of the 40 tiny samples).
    assert len(explore.validation_samples(config, predictor.stats, count=100)) == 8


def test_the_grid_shows_image_truth_and_prediction_with_their_dice(finished: tuple) -> None:
    _, folders, table, predictor = finished
    run_name, _ = explore.best_checkpoint(table, folders.WEIGHT_DIR)
    samples = explore.validation_samples(explore.run_config(folders.LOG_DIR, run_name), predictor.stats, count=2)
    logits = explore.predict_samples(predictor, samples)
    fig = explore.sample_grid(samples, logits, predictor.task, predictor.classes)
    assert len(fig.get_axes()) == 2 * 3
    score = float(dice(logits[1], samples[1][1][None], "binary").mean())
    assert [axis.get_title() for axis in fig.get_axes()[3:]] == ["image", "true mask", f"predicted (dice {score:.3f})"]
    truth = fig.get_axes()[4].get_images()[0].get_array()
    assert truth.shape == (32, 32, 3) and set(truth.ravel().tolist()) <= {0.0, 1.0}  # binary: black and white
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == list(legend_colours("binary", predictor.classes))


def test_a_multiclass_grid_colours_each_class_and_a_multilabel_one_names_its_channels() -> None:
    target = torch.tensor([[[0, 1], [2, -1]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0  # class 2 everywhere
    fig = explore.sample_grid([(torch.rand(4, 2, 2), target)], [logits], "multiclass", ["bg", "a", "b"])
    _, truth, predicted = (axis.get_images()[0].get_array() for axis in fig.get_axes())
    colours = legend_colours("multiclass", ["bg", "a", "b"])
    expected = torch.tensor([colours[name] for name in ("bg", "a", "b", "ignored")])
    torch.testing.assert_close(torch.from_numpy(truth.reshape(4, 3)), expected)
    torch.testing.assert_close(torch.from_numpy(predicted.reshape(4, 3)), expected[2].expand(4, 3))

    fig = explore.sample_grid(
        [(torch.rand(1, 2, 2), torch.zeros(4, 2, 2))], [torch.zeros(1, 4, 2, 2)], "multilabel", list("wxyz")
    )
    names = [text.get_text() for text in fig.legends[0].get_texts()]
    assert names == ["w (red)", "x (green)", "y (blue)", "ignored", "not shown: z"]
    assert fig.get_axes()[2].get_title() == "predicted (dice undefined: both empty)"  # not a perfect 1.000


def test_missing_files_are_one_line_errors(finished: tuple, tmp_path) -> None:
    _, _, table, _ = finished
    with pytest.raises(ReportError, match="has a best.pt"):
        explore.best_checkpoint(table, tmp_path)
    with pytest.raises(ReportError, match="has no .*config.json"):
        explore.run_config(tmp_path, "20250101-120000_unet_pytorch")
    with pytest.raises(ReportError, match="no validation sample"):
        explore.sample_grid([], [], "binary", ["foreground"])
