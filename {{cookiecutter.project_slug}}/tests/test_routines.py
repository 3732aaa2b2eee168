"""What every routine of the project does the same way, checked on each of them."""

import importlib

import numpy as np
import pytest
import torch

from config.config import GlobalConfig
from train import ROUTINES


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
