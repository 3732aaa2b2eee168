"""What every routine of the project does the same way, checked on each of them."""

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ScriptedLoss

import predict
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.serialize import ConfigError
from models.unet import UNet


@pytest.mark.slow
@pytest.mark.parametrize("routine", ROUTINES)
def test_early_stopping_stops_after_patience(routine: str, tiny_config: dict, global_config: GlobalConfig) -> None:
    # No improvement can beat a min_delta of 10 (the dice is at most 1): patience 1 stops after epoch 2 of 5.
    tiny_config.update(EPOCHS=5, EARLY_STOPPING={"patience": 1, "min_delta": 10.0})
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and result.epochs_completed == 2 and result.best_epoch == 1


@pytest.mark.slow
@pytest.mark.parametrize("routine", ROUTINES)
def test_bf16_mixed_precision_on_cpu_trains(routine: str, tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config.update(EPOCHS=1, MIXED_PRECISION="bf16")
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and np.isfinite(result.final["train_loss"])
    assert not torch.is_autocast_enabled("cpu")  # the run's autocast is closed again


@pytest.mark.parametrize("routine", ROUTINES)
def test_fp16_on_cpu_is_refused_before_anything_is_written(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiny_config["MIXED_PRECISION"] = "fp16"
    with pytest.raises(ConfigError, match="MIXED_PRECISION='fp16' needs a CUDA device"):
        importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert not global_config.LOG_DIR.exists() and not global_config.WEIGHT_DIR.exists()


@pytest.mark.slow
@pytest.mark.parametrize("routine", ROUTINES)
def test_channels_last_trains_and_its_checkpoint_predicts(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiny_config.update(EPOCHS=1, CHANNELS_LAST=True)
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and np.isfinite(result.final["train_loss"])
    weights = torch.load(result.weight_dir / "last.pt", weights_only=True)["model"]
    assert weights["head.0.weight"].is_contiguous(memory_format=torch.channels_last)  # trained in that layout
    model, _ = predict.load_model(result.weight_dir / "best.pt", torch.device("cpu"))
    mask = predict.predict_mask(
        model, np.random.default_rng(0).random((1, 32, 32), dtype=np.float32), torch.device("cpu")
    )
    assert mask.shape == (32, 32)


GRAPHS: list[torch.fx.GraphModule] = []


def recording_backend(graph: torch.fx.GraphModule, _example_inputs: list) -> Callable:
    """torch.compile's backend: notes the traced forward (the model was compiled) and runs it as it is (eager: fast
    in a test, unlike inductor's C++ build). At the top level: a config's functions are saved by name."""
    GRAPHS.append(graph)
    return graph.forward


@pytest.mark.slow
@pytest.mark.parametrize("routine", ROUTINES)
def test_compile_trains_with_the_compiled_model_and_saves_plain_keys(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    GRAPHS.clear()
    torch._dynamo.reset()  # pylint: disable=protected-access  # compile again: another routine may have cached it
    tiny_config.update(EPOCHS=1, COMPILE={"backend": recording_backend})
    result = importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    assert result.status == "completed" and np.isfinite(result.final["train_loss"])
    assert GRAPHS, "torch.compile's backend was never called"
    checkpoint = torch.load(result.weight_dir / "last.pt", weights_only=True)
    assert set(checkpoint["model"]) == set(UNet(**tiny_config["MODEL_CONFIG"]).state_dict())  # no _orig_mod.
    model, _ = predict.load_model(result.weight_dir / "last.pt", torch.device("cpu"))
    assert not any(key.startswith("_orig_mod") for key in model.state_dict())


@pytest.mark.parametrize("routine", ROUTINES)
def test_a_nan_loss_mid_training_marks_the_run_failed_and_keeps_its_files(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiny_config["LOSS"] = ScriptedLoss(4)  # fine for the sanity check and two steps, then NaN
    with pytest.raises(FloatingPointError, match="the training loss is nan"):
        importlib.import_module(f"training.{routine}_training").train(tiny_config, global_config)
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "failed" and "FloatingPointError" in row["error"]
    assert (Path(row["run_dir"]) / "config.json").is_file()
