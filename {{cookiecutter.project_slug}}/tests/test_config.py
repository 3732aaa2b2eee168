"""Config validation, global paths, device selection and the train.py command line around them."""

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

import train
from config.device import DeviceError, get_device
from config.overrides import apply_override
from config.paths import GlobalConfig, get_global_config
from config.schema import SCHEMA, all_keys, validate_config
from config.serialize import ConfigError, from_jsonable, import_object, to_jsonable
from config.train_config import TRAIN_CONFIG
from models.unet import UNet
from training.build import build_scheduler
from utils.metrics import dice


def test_default_config_is_valid_and_gets_defaults() -> None:
    config = validate_config(TRAIN_CONFIG)
    assert set(config) == set(all_keys())
    assert set(SCHEMA) <= set(config)
    assert config["CHECKPOINT_MODE"] == "max"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LERNING_RATE": 1}, "unknown key 'LERNING_RATE'"),
        ({"EPOCHS": "10"}, "EPOCHS: expected an int, got str"),
        ({"EPOCHS": 0}, "EPOCHS: must be > 0"),
        ({"EPOCHS": True}, "EPOCHS: expected an int, got bool"),
        ({"MODEL": "UNet"}, "MODEL: cannot import 'UNet': give the dotted name of a class or function"),
        (
            {"OPTIMIZER": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1)},
            "OPTIMIZER: expected a class, function or functools.partial, got a SGD",
        ),
        ({"MODEL_CONFIG": {"bulk": 4}}, "MODEL_CONFIG: got an unexpected keyword argument 'bulk'"),
        ({"OPTIMIZER_CONFIG": {"learning_rate": 1}}, "OPTIMIZER_CONFIG: got an unexpected keyword argument"),
        ({"DATA_LOADER_CONFIG": {"shuffle": False}}, "DATA_LOADER_CONFIG: ['shuffle'] are set by the routine"),
        ({"CHECKPOINT_METRIC": "val_f1"}, "CHECKPOINT_METRIC: 'val_f1' is not logged"),
        ({"MIXED_PRECISION": "fp8"}, "MIXED_PRECISION: must be one of"),
        ({"EARLY_STOPPING": {"patience": 0}}, "EARLY_STOPPING: patience: must be > 0"),
        ({"METRICS": {"dice": "dice"}}, "metric 'dice' is not callable"),
        ({"VAL_FRACTION": 1.5}, "VAL_FRACTION: must be in (0, 1)"),
        ({"CHANNELS_LAST": 1}, "CHANNELS_LAST: expected True or False, got int"),
        ({"COMPILE": "max-autotune"}, "COMPILE: expected False, True or a dict of torch.compile keyword arguments"),
        ({"COMPILE": {"modes": "max-autotune"}}, "COMPILE: got an unexpected keyword argument 'modes'"),
    ],
)
def test_bad_config_is_refused_with_a_message_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({**TRAIN_CONFIG, **change})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_takes_the_value_of_train_config() -> None:
    config = {key: value for key, value in TRAIN_CONFIG.items() if key not in ("LOSS", "EPOCHS")}
    resolved = validate_config({**config, "COMMENT": "mine"})
    assert resolved["LOSS"] is TRAIN_CONFIG["LOSS"] and resolved["EPOCHS"] == TRAIN_CONFIG["EPOCHS"]
    assert resolved["COMMENT"] == "mine"


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({**TRAIN_CONFIG, "EPOCHS": -1, "SEED": "x", "TYPO": 1})
    assert all(part in str(info.value) for part in ("EPOCHS", "SEED", "TYPO"))


def test_to_jsonable_names_classes_and_functions_without_addresses() -> None:
    jsonable = to_jsonable(TRAIN_CONFIG)
    assert jsonable["MODEL"] == "models.unet.UNet"
    assert jsonable["LOSS"] == "utils.losses.dice_ce"
    assert jsonable["MODEL_CONFIG"]["activation"] == "torch.nn.modules.activation.ReLU"
    assert " at 0x" not in str(jsonable)
    assert import_object(jsonable["MODEL"]) is TRAIN_CONFIG["MODEL"]
    assert import_object(to_jsonable(dice)) is dice


def test_global_config_reads_env_overrides_and_creates_dirs_on_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "my_logs"))
    config = get_global_config()
    assert isinstance(config, GlobalConfig)
    assert config.LOG_DIR == tmp_path / "my_logs"
    assert not config.LOG_DIR.exists()
    assert config.run_log_dir("run1").is_dir()


def test_get_device_cpu_and_auto() -> None:
    assert get_device("cpu") == torch.device("cpu")
    # auto prefers CUDA, then MPS, then the CPU
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device(" Auto ").type == expected


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_refuses_missing_cuda(name: str) -> None:
    with pytest.raises(DeviceError, match=f"'{name}' requested but CUDA is not available"):
        get_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_get_device_gives_cuda_and_its_index_and_refuses_a_missing_index() -> None:
    count = torch.cuda.device_count()
    assert get_device("auto") == torch.device("cuda")
    assert get_device("CUDA") == torch.device("cuda")
    assert get_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(DeviceError, match=f"this machine has {count} CUDA device"):
        get_device(f"cuda:{count}")


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs Apple MPS")
def test_get_device_gives_mps() -> None:
    assert get_device("mps") == torch.device("mps")
    assert get_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "mps")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_get_device_refuses_missing_mps_and_nonsense() -> None:
    with pytest.raises(DeviceError, match="MPS is not available"):
        get_device("mps")
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        get_device("gpu0")


def test_set_overrides_parse_literals_dotted_keys_and_classes() -> None:
    config = {"OPTIMIZER_CONFIG": {"lr": 1.0}, "EPOCHS": 1}
    apply_override(config, "OPTIMIZER_CONFIG.lr=1e-3")
    apply_override(config, "EPOCHS=3")
    apply_override(config, "OPTIMIZER=torch.optim.SGD")
    apply_override(config, "COMMENT=hello world")
    apply_override(config, "EARLY_STOPPING=None")
    assert config == {
        "OPTIMIZER_CONFIG": {"lr": 1e-3},
        "EPOCHS": 3,
        "OPTIMIZER": torch.optim.SGD,
        "COMMENT": "hello world",
        "EARLY_STOPPING": None,
    }


@pytest.mark.parametrize(
    ("assignment", "message"),
    [("EPOCHS", "expected KEY=VALUE"), ("NOPE.lr=1", "unknown key 'NOPE'"), ("EPOCHS.x=1", "'EPOCHS' is not a dict")],
)
def test_bad_set_is_refused(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_override({"EPOCHS": 1}, assignment)


def test_help_lists_every_config_key(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert all(key in out for key in all_keys())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("OPTIMIZER_CONFIG.betas=3", "OPTIMIZER=AdamW does not take OPTIMIZER_CONFIG"),
        ("OPTIMIZER_CONFIG.lr=-1", "Invalid learning rate"),
        ("MODEL_CONFIG.out_channels=2", "error: sanity check 'output channels' failed"),
    ],
)
def test_arguments_the_model_or_a_class_refuses_are_one_line_errors_before_anything_is_written(
    assignment: str, message: str, run_script: Callable, global_config: GlobalConfig
) -> None:
    result = run_script("train.py", "--set", assignment, "--set", "DEVICE='cpu'", "--epochs", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not global_config.LOG_DIR.exists() or not any(global_config.LOG_DIR.iterdir())


def test_partial_activation_round_trips_through_json() -> None:
    config = {
        **TRAIN_CONFIG,
        "MODEL_CONFIG": {**TRAIN_CONFIG["MODEL_CONFIG"], "activation": partial(nn.LeakyReLU, 0.1)},
    }
    jsonable = to_jsonable(config)
    assert jsonable["MODEL_CONFIG"]["activation"] == {
        "partial": "torch.nn.modules.activation.LeakyReLU",
        "args": [0.1],
        "kwargs": {},
    }
    assert json.loads(json.dumps(jsonable)) == jsonable
    rebuilt = from_jsonable(jsonable)
    activation = rebuilt["MODEL_CONFIG"]["activation"]
    assert isinstance(activation, partial) and activation.func is nn.LeakyReLU and activation.args == (0.1,)
    assert rebuilt["MODEL"] is UNet and rebuilt["LOSS"] is TRAIN_CONFIG["LOSS"]
    assert to_jsonable(rebuilt) == jsonable


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"LOSS": lambda logits, target: (logits - target).mean()}, "LOSS"),
        (
            {"MODEL_CONFIG": {**TRAIN_CONFIG["MODEL_CONFIG"], "activation": lambda: nn.ReLU(inplace=True)}},
            "MODEL_CONFIG.activation",
        ),
    ],
)
def test_a_lambda_in_the_config_is_refused_naming_its_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: .*<lambda> cannot be saved and rebuilt"):
        to_jsonable({**TRAIN_CONFIG, **change})


def test_schedule_length_follows_epochs_and_an_explicit_other_one_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    config = validate_config({**TRAIN_CONFIG, "EPOCHS": 5})
    with caplog.at_level(logging.WARNING, logger="project"):
        scheduler = build_scheduler(config, optimizer, steps_per_epoch=3)
    assert scheduler.T_max == 5 and not caplog.records
    config = validate_config({**TRAIN_CONFIG, "EPOCHS": 5, "SCHEDULER_CONFIG": {"T_max": 2}})
    with caplog.at_level(logging.WARNING, logger="project"):
        scheduler = build_scheduler(config, optimizer, steps_per_epoch=3)
    assert scheduler.T_max == 2
    assert [record.getMessage() for record in caplog.records] == [
        "SCHEDULER_CONFIG.T_max=2 but EPOCHS=5: the schedule does not end with the run "
        "(leave T_max out of SCHEDULER_CONFIG to follow EPOCHS)"
    ]
