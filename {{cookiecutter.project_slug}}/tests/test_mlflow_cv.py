"""A cross-validation in MLflow, read back from the local SQLite store: its folds are child runs of one parent run
named after it, which holds last.pt's figures of cv_summary.csv as metrics, its config as parameters and its files
as artifacts; undefined values stay NaN; a store out of reach costs one warning."""

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_mlflow import _free_port, _local_store, _mlflow_config, _warnings  # noqa: F401  # pylint: disable=unused-import

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from extensions.mlflow_tracking import on_cross_validation, tracking_uri
from training.folds import cross_validate

ROUTINE = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]


def _headline(folder: Path) -> dict[str, float]:
    """cv_<metric>_mean, _std and _oof of last.pt, as cv_summary.csv has them."""
    summary = pd.read_csv(folder / "cv_summary.csv")
    last = summary[summary["checkpoint"] == "last.pt"]
    return {
        f"cv_{row.metric}_{name}": getattr(row, column)
        for row in last.itertuples()
        for name, column in (("mean", "mean"), ("std", "std"), ("oof", "out_of_fold"))
    }


@pytest.mark.slow
def test_the_folds_are_children_of_the_cross_validation_which_holds_its_summary(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    config = _mlflow_config(tiny_config, FOLDS=2, EPOCHS=1)
    config["DATASET_CONFIG"] = {**config["DATASET_CONFIG"], "n_samples": 16}
    result = cross_validate(config, global_config, ROUTINE)
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("kind") == "cross_validation"]
    assert parent.info.run_name == parent.data.tags["cv_name"] == result.run_name
    assert parent.info.status == "FINISHED" and parent.data.tags["folds"] == "2"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    state = json.loads((result.run_dir / "cv.json").read_text(encoding="utf-8"))
    assert {(run.data.tags["fold"], run.info.run_name) for run in children} == set(state["runs"].items())
    assert {run.data.tags["cv_name"] for run in children} == {result.run_name}

    expected = _headline(result.run_dir)
    assert expected and parent.data.metrics == pytest.approx(expected, abs=0)  # the numbers of the file
    assert all(client.get_metric_history(parent.info.run_id, key)[0].step == 0 for key in expected)
    assert parent.data.params["OPTIMIZER_CONFIG.lr"] == repr(config["OPTIMIZER_CONFIG"]["lr"])
    assert (
        parent.data.params["FOLDS"] == "2" and "FOLD" not in parent.data.params and "EPOCHS" not in parent.data.params
    )
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"cv_summary.csv", "out_of_fold.csv", "folds.csv", "cv.json"}

    # An undefined value stays undefined in MLflow (NaN, not 0), and a summary written again replaces the figures.
    summary = pd.read_csv(result.run_dir / "cv_summary.csv")
    dice = (summary["checkpoint"] == "last.pt") & (summary["metric"] == "val_dice")
    summary.loc[dice, ["std", "out_of_fold"]] = [math.nan, 0.25]
    summary.to_csv(result.run_dir / "cv_summary.csv", index=False, float_format="%.6g", na_rep="nan")
    on_cross_validation(result.run_dir, global_config.LOG_DIR)
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert math.isnan(metrics["cv_val_dice_std"]) and metrics["cv_val_dice_oof"] == 0.25
    assert len(client.search_runs([parent.info.experiment_id])) == 3  # the same parent, not a second one


def _cv_folder(folder: Path, mlflow: bool) -> Path:
    """A cross-validation's cv.json and cv_summary.csv as training/folds.py writes them, of one metric."""
    folder.mkdir(parents=True)
    config = {
        "SESSION_NAME": "s",
        "FOLDS": 2,
        "MLFLOW": mlflow,
        "MLFLOW_EXPERIMENT": "tests",
        "MLFLOW_LOG_WEIGHTS": False,
    }
    (folder / "cv.json").write_text(json.dumps({"cv_name": folder.name, "folds": 2, "runs": {}, "config": config}))
    row = {"checkpoint": "last.pt", "optimistic": False, "metric": "val_dice", "mean": 0.5, "std": 0.1, "folds": 2}
    pd.DataFrame([{**row, "out_of_fold": 0.5, "fold_0": 0.4, "fold_1": 0.6}]).to_csv(folder / "cv_summary.csv")
    return folder


def test_a_cross_validation_without_mlflow_leaves_mlflow_alone(global_config: GlobalConfig) -> None:
    on_cross_validation(_cv_folder(global_config.LOG_DIR / "s_cv2_0", mlflow=False), global_config.LOG_DIR)
    assert not (global_config.LOG_DIR / "mlflow.db").exists()


def test_a_store_out_of_reach_costs_one_warning(
    global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    on_cross_validation(_cv_folder(global_config.LOG_DIR / "s_cv2_0", mlflow=True), global_config.LOG_DIR)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("MLflow cross-validation summary failed"), warnings
    assert "Connection refused" in warnings[0]
