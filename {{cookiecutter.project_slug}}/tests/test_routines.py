"""What every routine of the project does the same way, checked on each of them."""

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from config.config import GlobalConfig
from train import ROUTINES
from utils.loss import dice_bce


@pytest.mark.parametrize("routine", ROUTINES)
def test_early_stopping_stops_after_patience(routine: str, tiny_config: dict, global_config: GlobalConfig) -> None:
    # A learning rate of zero never improves on the first epoch: patience 1 stops after epoch 2 of 5.
    tiny_config.update(
        EPOCHS=5,
        EARLY_STOPPING={"patience": 1, "min_delta": 0.0},
        SCHEDULER=None,
        SCHEDULER_CONFIG={},
        OPTIMIZER_CONFIG={"lr": 0.0},
    )
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and result.epochs_completed == 2 and result.best_epoch == 1


@pytest.mark.parametrize("routine", ROUTINES)
def test_bf16_mixed_precision_on_cpu_trains(routine: str, tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config.update(EPOCHS=1, MIXED_PRECISION="bf16")
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and np.isfinite(result.final["train_loss"])
    assert not torch.is_autocast_enabled("cpu")  # the run's autocast is closed again


@pytest.mark.parametrize("routine", ROUTINES)
def test_a_nan_loss_mid_training_marks_the_run_failed_and_keeps_its_files(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    calls = []

    def exploding_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # fine for the preflight check and two steps, then NaN
        return dice_bce(logits, target) * (float("nan") if len(calls) > 3 else 1.0)

    tiny_config["LOSS"] = exploding_loss
    with pytest.raises(FloatingPointError, match="training loss is not finite"):
        importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "failed" and "FloatingPointError" in row["error"]
    assert (Path(row["run_dir"]) / "config.json").is_file()
