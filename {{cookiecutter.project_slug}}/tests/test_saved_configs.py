"""What a run saves of its config is enough to rebuild it: partials, a --config file's own functions, the schedule's
length, and checkpoints of the format before this one."""

import importlib
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import predict
import train
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.serialize import from_jsonable
from training.checkpoint import V1_MODEL_ARGUMENTS, load_checkpoint

# A --config file that defines its own loss: the run saves it as "path:my_loss" and rebuilds it from the file.
CONFIG_FILE = """
import torch.nn.functional as F

from config.train_config import TRAIN_CONFIG as DEFAULTS


def my_loss(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)


TRAIN_CONFIG = {
    "ROUTINE": DEFAULTS["ROUTINE"],
    "DEVICE": "cpu",
    "MODEL_CONFIG": {**DEFAULTS["MODEL_CONFIG"], "base_channels": 4, "depth": 2},
    "DATASET_CONFIG": {"n_samples": 24, "size": 32, "seed": 0},
    "DATA_LOADER_CONFIG": {"batch_size": 8, "num_workers": 0},
    "LOSS": my_loss,
}
"""


def _write_inputs(folder: Path) -> Path:
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 44), dtype=np.uint8)).save(folder / "image.png")
    return folder


def _predicts(weights: Path, tmp_path: Path) -> None:
    inputs, output = _write_inputs(tmp_path / f"inputs_{weights.stem}"), tmp_path / f"masks_{weights.stem}"
    assert predict.main(["-i", str(inputs), "-o", str(output), "--weights", str(weights), "--device", "cpu"]) == 0
    mask = np.array(Image.open(output / "image.png"))
    assert mask.shape == (30, 44) and set(np.unique(mask)) <= {0, 255}


def test_a_partial_activation_is_saved_as_data_and_predict_rebuilds_it(
    tiny_config: dict, global_config: GlobalConfig, tmp_path: Path
) -> None:
    routine = importlib.import_module(f"training.{ROUTINES[0]}_training")
    tiny_config.update(EPOCHS=1, MODEL_CONFIG={**tiny_config["MODEL_CONFIG"], "activation": partial(nn.LeakyReLU, 0.1)})
    result = routine.train(tiny_config, global_config)
    saved = json.loads((result.run_dir / "config.json").read_text())["config"]["MODEL_CONFIG"]["activation"]
    assert saved == {"partial": "torch.nn.modules.activation.LeakyReLU", "args": [0.1], "kwargs": {}}
    model, _ = predict.load_model(result.weight_dir / "best.pt", torch.device("cpu"))
    slopes = {module.negative_slope for module in model.modules() if isinstance(module, nn.LeakyReLU)}
    assert slopes == {0.1} and not any(isinstance(module, nn.ReLU) for module in model.modules())
    _predicts(result.weight_dir / "best.pt", tmp_path)

    # The same weights in a checkpoint of format 1 (the U-Net's old argument names, no extension states).
    old = load_checkpoint(result.weight_dir / "best.pt")
    renamed = {new: old_name for old_name, new in V1_MODEL_ARGUMENTS.items()}
    model_config = {renamed.get(key, key): value for key, value in old["config"]["MODEL_CONFIG"].items()}
    model_config["use_shuffle"] = model_config.pop("upsampling") == "pixel_shuffle"
    del old["extensions"]
    v1 = {**old, "format_version": 1, "config": {**old["config"], "MODEL_CONFIG": model_config}}
    torch.save(v1, tmp_path / "v1.pt")
    upgraded = load_checkpoint(tmp_path / "v1.pt")
    assert upgraded["format_version"] == 2 and upgraded["config"]["MODEL_CONFIG"] == old["config"]["MODEL_CONFIG"]
    _predicts(tmp_path / "v1.pt", tmp_path)


@pytest.mark.slow
@pytest.mark.usefixtures("global_config")
def test_a_config_files_own_loss_is_saved_by_file_and_name_and_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    config_file = tmp_path / "my_experiment.py"
    config_file.write_text(CONFIG_FILE, encoding="utf-8")
    assert train.main(["--config", str(config_file), "--epochs", "4"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    run_dir, weights = (Path(out.split(f"{name}: ")[1].splitlines()[0]) for name in ("logs", "weights"))
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["LOSS"] == f"{config_file}:my_loss"

    # The schedule's length followed --epochs: the lr falls every epoch and reaches 0 with the last one.
    assert not [record for record in caplog.records if "SCHEDULER_CONFIG" in record.getMessage()]
    lrs = pd.read_csv(run_dir / "history.csv")["lr"].tolist()
    assert len(lrs) == 4 and all(later < earlier for earlier, later in zip(lrs, lrs[1:], strict=False))
    last = torch.load(weights / "last.pt", weights_only=True)
    assert last["scheduler"]["T_max"] == 4 and last["optimizer"]["param_groups"][0]["lr"] < 1e-9

    # Resuming runs the file again and finds the same config; predict rebuilds the model of that run.
    assert train.main(["--config", str(config_file), "--epochs", "4", "--resume", saved["run_name"]]) == 0
    capsys.readouterr()
    _predicts(weights / "best.pt", tmp_path)
    # A fresh process has no module of the file yet: from_jsonable runs the file again to rebuild the loss.
    for name in [name for name in sys.modules if name.startswith("_config_file_")]:
        del sys.modules[name]
    loss = from_jsonable(saved["config"])["LOSS"]
    assert loss.__name__ == "my_loss" and loss.__module__.startswith("_config_file_")
    logits, target = torch.randn(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    torch.testing.assert_close(loss(logits, target), nn.functional.binary_cross_entropy_with_logits(logits, target))


@pytest.mark.slow
def test_a_resumed_run_with_more_epochs_stretches_a_schedule_that_follows_epochs(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    routine = importlib.import_module(f"training.{ROUTINES[0]}_training")
    first = routine.train({**tiny_config, "EPOCHS": 1, "EARLY_STOPPING": None}, global_config)
    assert load_checkpoint(first.weight_dir / "last.pt")["scheduler"]["T_max"] == 1
    routine.train({**tiny_config, "EPOCHS": 3, "EARLY_STOPPING": None}, global_config, resume=first.run_name)
    last = load_checkpoint(first.weight_dir / "last.pt")
    history = pd.read_csv(first.run_dir / "history.csv")
    # T_max is EPOCHS again: the lr of epoch 2 is back on the way down from the peak, not 0 (the 1-epoch schedule's end)
    assert last["scheduler"]["T_max"] == 3 and history["epoch"].tolist() == [1, 2, 3]
    assert history["lr"].iloc[1] > 0.1 * history["lr"].iloc[0] and last["optimizer"]["param_groups"][0]["lr"] < 1e-9
