"""A --config file's dicts merge key by key into config/train_config.py's, unless the file changes their class."""

import importlib
import json
import logging
from pathlib import Path

import pytest
import torch

from config.overrides import ROUTINES, load_config, resolve_config
from config.paths import GlobalConfig
from config.train_config import TRAIN_CONFIG
from models.unet import UNet
from train import build_parser

# The project's first routine (any one does: the behaviour tested is the Run's, shared by all three).
TRAIN = importlib.import_module(f"training.{ROUTINES[0]}_training").train


def config_file(tmp_path: Path, body: str) -> str:
    """A --config file whose TRAIN_CONFIG is ``body`` (Python, with the usual imports at hand)."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "experiment.py"
    head = "import torch\nfrom config.merge import Replace\nfrom utils.data.folder import SegmentationFolder\n"
    head += "from config.overrides import load_config\nfrom utils.metrics import dice\n"
    path.write_text(f"{head}TRAIN_CONFIG = {body}\n", encoding="utf-8")
    return str(path)


def test_a_partial_model_config_keeps_the_default_model(tmp_path: Path) -> None:
    # It replaced the whole dict: UNet(in_channels=1, out_channels=3) with its signature's base 32 and depth 4.
    config = load_config(config_file(tmp_path, '{"MODEL_CONFIG": {"in_channels": 1, "out_channels": 3}}'))
    assert set(config) == set(TRAIN_CONFIG)  # every key (hyperparameter.py read SESSION_NAME: a KeyError)
    assert config["MODEL_CONFIG"] == {**TRAIN_CONFIG["MODEL_CONFIG"], "in_channels": 1, "out_channels": 3}
    model = config["MODEL"](**config["MODEL_CONFIG"])
    assert sum(p.numel() for p in model.parameters()) < 0.75e6  # the config's 0.73 M, not the signature's 11.8 M


def test_a_file_that_names_the_default_class_merges_too(tmp_path: Path) -> None:
    body = '{"OPTIMIZER": torch.optim.AdamW, "OPTIMIZER_CONFIG": {"lr": 0.01}, "EARLY_STOPPING": {"patience": 2}}'
    config = load_config(config_file(tmp_path, body))
    assert config["OPTIMIZER_CONFIG"] == {**TRAIN_CONFIG["OPTIMIZER_CONFIG"], "lr": 0.01}
    assert config["EARLY_STOPPING"] == {**TRAIN_CONFIG["EARLY_STOPPING"], "patience": 2}  # a dict without a class


def test_dicts_without_a_class_merge_and_other_values_replace(tmp_path: Path) -> None:
    body = '{"DATA_LOADER_CONFIG": {"batch_size": 4}, "METRICS": {"dice": dice}, "CLASSES": ["cell"]}'
    config = load_config(config_file(tmp_path, body))
    assert config["DATA_LOADER_CONFIG"] == {**TRAIN_CONFIG["DATA_LOADER_CONFIG"], "batch_size": 4}
    assert list(config["METRICS"]) == ["dice"] and config["CLASSES"] == ["cell"]  # names, not keyword arguments


def test_a_changed_class_takes_the_files_dict_alone_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = (
        '{"OPTIMIZER": torch.optim.SGD, "OPTIMIZER_CONFIG": {"lr": 0.1}, "DATASET": SegmentationFolder, '
        '"DATASET_CONFIG": {"root": "data/set"}, "SCHEDULER": torch.optim.lr_scheduler.StepLR, '
        '"SCHEDULER_CONFIG": {"step_size": 2}, "MODEL": torch.nn.Identity}'
    )
    with caplog.at_level(logging.INFO, logger="project"):
        config = load_config(config_file(tmp_path, body))
    assert config["OPTIMIZER_CONFIG"] == {"lr": 0.1}  # SGD gets no weight_decay of AdamW's
    assert config["DATASET_CONFIG"] == {"root": "data/set"}  # SegmentationFolder gets no n_samples
    assert config["SCHEDULER_CONFIG"] == {"step_size": 2} and config["MODEL_CONFIG"] == {}  # none set: none taken
    # not a dict: validation refuses it with one line, the merge passes it on
    assert load_config(config_file(tmp_path / "none", '{"LOSS": len, "LOSS_CONFIG": None}'))["LOSS_CONFIG"] is None
    assert [record.getMessage() for record in caplog.records] == [
        "OPTIMIZER changed to torch.optim.sgd.SGD: OPTIMIZER_CONFIG is the file's, not merged with the default's "
        "(weight_decay left out)",
        "DATASET changed to utils.data.folder.SegmentationFolder: DATASET_CONFIG is the file's, not merged with the "
        "default's (n_samples, size, seed left out)",
        "MODEL changed to torch.nn.modules.linear.Identity: MODEL_CONFIG is the file's, not merged with the default's "
        "(in_channels, out_channels, base_channels, depth, upsampling, dropout, activation left out)",
    ]


def test_replace_makes_a_dict_whole_under_the_same_class(tmp_path: Path) -> None:
    body = '{"MODEL_CONFIG": Replace(in_channels=1, out_channels=3), "EARLY_STOPPING": Replace({"patience": 3})}'
    config = load_config(config_file(tmp_path, body))
    assert config["MODEL_CONFIG"] == {"in_channels": 1, "out_channels": 3}
    assert config["EARLY_STOPPING"] == {"patience": 3}
    # It stays a Replace, so that a file built on this one (best_config.py: load_config(file) + values) replaces too.
    again = config_file(tmp_path / "again", f"load_config({config_file(tmp_path, body)!r})")
    assert load_config(again)["MODEL_CONFIG"] == {"in_channels": 1, "out_channels": 3}


def test_config_json_and_the_start_line_give_the_merged_model(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    small = {key: tiny_config[key] for key in ("DATASET_CONFIG", "DATA_LOADER_CONFIG", "DEVICE")}
    body = f'{{**{small!r}, "EPOCHS": 1, "MODEL_CONFIG": {{"base_channels": 4, "depth": 2}}}}'
    config, routine = resolve_config(build_parser().parse_args(["--config", config_file(tmp_path, body)]))
    with caplog.at_level(logging.INFO, logger="project"):
        result = TRAIN(config, global_config)
    assert routine and result.status == "completed"
    saved = json.loads((result.run_dir / "config.json").read_text(encoding="utf-8"))["config"]["MODEL_CONFIG"]
    expected = {**TRAIN_CONFIG["MODEL_CONFIG"], "base_channels": 4, "depth": 2}
    assert saved == {**expected, "activation": "torch.nn.modules.activation.ReLU"}
    count = sum(parameter.numel() for parameter in UNet(**expected).parameters())
    start = next(record.getMessage() for record in caplog.records if record.getMessage().startswith("run "))
    assert f"({ROUTINES[0]} routine) on cpu, model UNet: {count:,} parameters: logs in " in start, start
    assert torch.load(result.weight_dir / "last.pt", weights_only=True)["config"]["MODEL_CONFIG"]["depth"] == 2
