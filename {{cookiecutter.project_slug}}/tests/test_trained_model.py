"""The trained model meets its quality floor: the latest run's best.pt, evaluated on the labelled TEST_FOLDER of
config/train_config.py, scores at least QUALITY_FLOOR (e.g. ``{"dice": 0.8}``: the mean over the test images of
the mean over classes; ``"dice_<class>"`` for one class). Skipped, with the reason, until both are set and a run
exists. The tables go to ``LOG_DIR/<run>/evaluation/test_folder/`` as ``make evaluate`` writes them."""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import evaluate
from config.paths import GlobalConfig, get_global_config
from config.train_config import TRAIN_CONFIG
from utils.files import latest_run_dir


def quality_shortfalls(config: dict[str, Any], global_config: GlobalConfig) -> list[str]:
    """What misses QUALITY_FLOOR when the latest run's best.pt is evaluated on TEST_FOLDER (empty: all met).

    Skips the calling test when TEST_FOLDER or QUALITY_FLOOR is unset or no run has a best.pt; fails it for a
    metric that summary.csv does not hold.
    """
    folder, floor = config.get("TEST_FOLDER"), config.get("QUALITY_FLOOR") or {}
    if not folder:
        pytest.skip("TEST_FOLDER is not set in config/train_config.py: name a labelled folder (images/, masks/)")
    if not floor:
        pytest.skip('QUALITY_FLOOR is not set in config/train_config.py, e.g. {"dice": 0.8}')
    run = latest_run_dir(global_config.WEIGHT_DIR, "best.pt")
    if run is None:
        pytest.skip(f"no run with a best.pt in {global_config.WEIGHT_DIR}: train first (make train)")
    weights = run / "best.pt"
    if not Path(folder).is_dir():
        pytest.fail(f"TEST_FOLDER {folder} is not a folder: name a labelled folder (images/, masks/)", pytrace=False)
    assert evaluate.main(["--data", str(folder), "--weights", str(weights), "--name", "test_folder"]) == 0, (
        "evaluate.py refused TEST_FOLDER: its error line is above"
    )
    summary = pd.read_csv(global_config.LOG_DIR / run.name / "evaluation" / "test_folder" / "summary.csv")
    rows = summary.set_index("class")
    scores = {name: float(rows.loc["mean", name]) for name in rows.columns}  # dice, iou and their pooled values
    scores.update(
        {f"{metric}_{name}": float(rows.loc[name, metric]) for name in rows.index[:-1] for metric in ("dice", "iou")}
    )
    unknown = sorted(set(floor) - set(scores))
    assert not unknown, f"QUALITY_FLOOR names {unknown}; evaluate.py reports {sorted(scores)}"
    return [
        f"{name} {scores[name]:.4f} < {minimum} on {Path(folder)} ({weights})"
        for name, minimum in floor.items()
        if scores[name] < minimum
    ]


def test_the_trained_model_meets_its_quality_floor() -> None:
    shortfalls = quality_shortfalls(TRAIN_CONFIG, get_global_config())
    assert not shortfalls, "; ".join(shortfalls)
