"""The experiment config: its keys (SCHEMA), their checks, and the config as data.

``validate_config`` refuses a wrong config before anything is written; ``to_jsonable`` and ``import_object`` turn
classes and functions into dotted names and back, for config.json, checkpoints and experiments.csv.
"""

import importlib
import importlib.util
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class ConfigError(ValueError):
    """The experiment config is wrong; raised before anything is written."""


# ---------------------------------------------------------------------------------------------------------------------
# Config validation
# ---------------------------------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _of_type(*types: type, name: str) -> Check:
    def check(value: Any) -> str | None:
        # bool is an int in Python, but True is never a sensible epoch count or learning rate
        if isinstance(value, bool) and bool not in types:
            return f"expected {name}, got a bool"
        return None if isinstance(value, types) else f"expected {name}, got {type(value).__name__}"

    return check


def _subclass_of(base: type, name: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, type) and issubclass(value, base):
            return None
        got = f"an instance of {type(value).__name__}" if not isinstance(value, type) else value.__name__
        return f"expected a {name} class (not an instance), got {got}"

    return check


def _callable(value: Any) -> str | None:
    return None if callable(value) else f"expected a function or class, got {type(value).__name__}"


def _kwargs(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return f"expected a dict of keyword arguments, got {type(value).__name__}"
    return None


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _all(*checks: Check) -> Check:
    def check(value: Any) -> str | None:
        for one in checks:
            problem = one(value)
            if problem:
                return problem
        return None

    return check


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def _fraction(value: Any) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (exclusive), got {value}"


def _one_of(*choices: Any) -> Check:
    return lambda value: None if value in choices else f"must be one of {list(choices)}, got {value!r}"


def _metrics(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a dict of name -> function, got {type(value).__name__}"
    for name, function in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            return f"metric names must be identifiers, got {name!r}"
        if not callable(function):
            return f"metric {name!r} is not callable"
    return None


def _early_stopping(value: Any) -> str | None:
    if not isinstance(value, dict) or set(value) - {"patience", "min_delta"} or "patience" not in value:
        return f"expected {{'patience': int, 'min_delta': float}}, got {value!r}"
    if isinstance(value["patience"], bool) or not isinstance(value["patience"], int) or value["patience"] < 1:
        return f"patience must be an int >= 1, got {value['patience']!r}"
    if not isinstance(value.get("min_delta", 0.0), (int, float)) or value.get("min_delta", 0.0) < 0:
        return f"min_delta must be a number >= 0, got {value.get('min_delta')!r}"
    return None


def _one_cycle(value: Any) -> str | None:
    if not isinstance(value, dict) or "max_lr" not in value or set(value) - {"max_lr", "pct_start"}:
        return f"expected {{'max_lr': float, 'pct_start': float}}, got {value!r}"
    if not isinstance(value["max_lr"], (int, float)) or value["max_lr"] <= 0:
        return f"max_lr must be a number > 0, got {value['max_lr']!r}"
    if not 0 < value.get("pct_start", 0.3) < 1:
        return f"pct_start must be between 0 and 1, got {value['pct_start']!r}"
    return None


def _emails(value: Any) -> str | None:
    if not value:
        return None
    try:  # utils/notify exists only in projects generated with use_smtp_notifications
        from utils.notify.settings import check_notify_setup  # pylint: disable=import-outside-toplevel
    except ImportError:
        return (
            "e-mail notification is not part of this project (generate it with use_smtp_notifications); "
            "set NOTIFY to None"
        )
    return check_notify_setup(value)


def _compile(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return f"expected False, True or a dict of torch.compile keyword arguments, got {type(value).__name__}"
    return _signature_problem(torch.compile, value, 1)


REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One config key: what it means, how it is checked and its default (REQUIRED if it has none)."""

    doc: str
    check: Check
    default: Any = REQUIRED


_is_int = _of_type(int, name="an int")
_is_number = _of_type(int, float, name="a number")
_is_str = _of_type(str, name="a string")
_is_bool = _of_type(bool, name="True or False")

SCHEMA: dict[str, Key] = {
    "SESSION_NAME": Key("name of the experiment series; part of every run name", _is_str),
    "ROUTINE": Key("default training routine (train.py --routine overrides it)", _is_str, "pytorch"),
    "SEED": Key("seed of every random number generator, the data split and the batch order", _is_int, 42),
    "DEVICE": Key("auto | cpu | cuda | cuda:N | mps", _is_str, "auto"),
    "MODEL": Key("model class (an nn.Module subclass)", _subclass_of(nn.Module, "torch.nn.Module")),
    "MODEL_CONFIG": Key("keyword arguments of MODEL", _kwargs, {}),
    "DATASET": Key("dataset class returning (image, mask) pairs", _subclass_of(Dataset, "torch Dataset")),
    "DATASET_CONFIG": Key("keyword arguments of DATASET", _kwargs, {}),
    "VAL_DATASET": Key(
        "validation dataset class; None splits VAL_FRACTION off DATASET",
        _optional(_subclass_of(Dataset, "torch Dataset")),
        None,
    ),
    "VAL_DATASET_CONFIG": Key("keyword arguments of VAL_DATASET", _kwargs, {}),
    "VAL_FRACTION": Key("share of DATASET held out for validation (seeded split)", _all(_is_number, _fraction), 0.2),
    "TRAIN_TRANSFORM": Key(
        "paired (image, mask) augmentation applied to training samples only", _optional(_callable), None
    ),
    "DATA_LOADER_CONFIG": Key(
        "keyword arguments of torch DataLoader (batch_size, num_workers, ...)", _kwargs, {"batch_size": 16}
    ),
    "OPTIMIZER": Key("optimizer class", _subclass_of(torch.optim.Optimizer, "torch.optim.Optimizer")),
    "OPTIMIZER_CONFIG": Key("keyword arguments of OPTIMIZER (lr, weight_decay, ...)", _kwargs, {}),
    "SCHEDULER": Key(
        "learning-rate scheduler class, stepped once per epoch; None for a constant lr",
        _optional(_subclass_of(object, "scheduler")),
        None,
    ),
    "SCHEDULER_CONFIG": Key("keyword arguments of SCHEDULER", _kwargs, {}),
    "ONE_CYCLE": Key(
        "{'max_lr': float, 'pct_start': 0.3} trains with the one-cycle policy (fastai's fit_one_cycle, torch's "
        "OneCycleLR stepped every batch) instead of SCHEDULER; None disables it",
        _optional(_one_cycle),
        None,
    ),
    "LR_FIND": Key(
        "run a learning-rate range test first and train with its suggestion (fastai, ignite)", _is_bool, False
    ),
    "LOSS": Key("loss(logits, target) -> scalar, the mean over samples; a function or an nn.Module class", _callable),
    "METRICS": Key("name -> metric(logits, target), logged as val_<name>", _metrics, {}),
    "EPOCHS": Key("number of epochs", _all(_is_int, _positive)),
    "MIXED_PRECISION": Key(
        "False | True (fp16 on CUDA, bf16 elsewhere) | 'bf16' | 'fp16' (CUDA only)",
        _one_of(False, True, "bf16", "fp16"),
        False,
    ),
    "CHANNELS_LAST": Key(
        "model and image batches in channels-last memory format (faster convolutions with mixed precision on recent "
        "GPUs, and on some CPUs)",
        _is_bool,
        False,
    ),
    "COMPILE": Key(
        "torch.compile the model: False | True | a dict of torch.compile kwargs, e.g. {'mode': 'max-autotune'} "
        "(the first steps then take longer: compilation)",
        _compile,
        False,
    ),
    "GRAD_CLIP": Key("max gradient norm; None disables clipping", _optional(_all(_is_number, _positive)), None),
    "EARLY_STOPPING": Key(
        "{'patience': epochs without improvement, 'min_delta': smallest improvement} or None",
        _optional(_early_stopping),
        None,
    ),
    "CHECKPOINT_METRIC": Key("val_loss or val_<metric>: picks best.pt, drives early stopping", _is_str, "val_loss"),
    "CHECKPOINT_MODE": Key(
        "min | max; None picks min for losses and max for metrics", _optional(_one_of("min", "max")), None
    ),
    "TENSORBOARD": Key("write TensorBoard events under logs/<run>/tensorboard", _is_bool, False),
    "LOGFILE": Key("copy the run's log lines to logs/<run>/train.log", _is_bool, True),
    "NOTIFY": Key(
        "e-mail address(es) told when the run ends or fails (SMTP_* environment variables)", _optional(_emails), None
    ),
    "COMMENT": Key("free text stored with the run", _is_str, ""),
}

# DataLoader arguments the routines set themselves (shuffling and its seeded generator), so a config cannot.
_LOADER_OWNED = {"dataset", "shuffle", "sampler", "batch_sampler", "generator"}


def _signature_problem(target: Any, kwargs: dict[str, Any], n_positional: int = 0) -> str | None:
    """Say which keyword arguments ``target`` does not take (None if they all fit)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: let the call itself complain
        return None
    try:
        signature.bind_partial(*([None] * n_positional), **kwargs)
    except TypeError as err:
        accepted = [name for name in signature.parameters if name not in ("self", "args", "kwargs")]
        return f"{err} (accepted: {', '.join(accepted[n_positional:])})"
    return None


def validate_config(config: Mapping[str, Any], refused: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check every key of ``config`` and return it with the defaults filled in.

    Unknown keys, missing required keys, wrong types, keyword arguments that the classes do not take, an
    inconsistent checkpoint metric and keys that the routine cannot honour (``refused``: key -> why, for keys set
    to anything but their default) are all reported together in one ConfigError, before anything is written.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a dict, got {type(config).__name__}")
    problems = [f"unknown key {key!r} (see train.py --help for the keys)" for key in config if key not in SCHEMA]
    resolved: dict[str, Any] = {}
    for key, spec in SCHEMA.items():
        if key not in config:
            if spec.default is REQUIRED:
                problems.append(f"missing key {key!r}: {spec.doc}")
                continue
            resolved[key] = _copy(spec.default)
            continue
        value = _plain(config[key])
        problem = spec.check(value)
        if problem:
            problems.append(f"{key}: {problem}")
        resolved[key] = value
    if not problems:
        problems += _cross_checks(resolved)
        problems += [f"{key}: {why}" for key, why in (refused or {}).items() if resolved[key] != SCHEMA[key].default]
    if problems:
        raise ConfigError("; ".join(problems))
    if resolved["CHECKPOINT_MODE"] is None:
        resolved["CHECKPOINT_MODE"] = "min" if resolved["CHECKPOINT_METRIC"].endswith("loss") else "max"
    return resolved


def _plain(value: Any) -> Any:
    """NumPy scalars (e.g. an lr read back with pandas) as Python numbers: checkpoints load with weights_only."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def _cross_checks(config: dict[str, Any]) -> list[str]:
    problems = []
    for cls_key, kwargs_key, n_positional in (
        ("MODEL", "MODEL_CONFIG", 0),
        ("DATASET", "DATASET_CONFIG", 0),
        ("VAL_DATASET", "VAL_DATASET_CONFIG", 0),
        ("OPTIMIZER", "OPTIMIZER_CONFIG", 1),
        ("SCHEDULER", "SCHEDULER_CONFIG", 1),
    ):
        if config[cls_key] is not None:
            problem = _signature_problem(config[cls_key], config[kwargs_key], n_positional)
            if problem:
                problems.append(f"{kwargs_key}: {problem}")
        elif config[kwargs_key]:
            problems.append(f"{kwargs_key} is set but {cls_key} is None")
    owned = _LOADER_OWNED & set(config["DATA_LOADER_CONFIG"])
    if owned:
        problems.append(f"DATA_LOADER_CONFIG: {sorted(owned)} are set by the routine (seeded shuffling)")
    problem = _signature_problem(DataLoader, config["DATA_LOADER_CONFIG"], 1)
    if problem:
        problems.append(f"DATA_LOADER_CONFIG: {problem}")
    if config["TENSORBOARD"] and importlib.util.find_spec("utils.logging.tensorboard") is None:
        problems.append("TENSORBOARD: this project was generated without TensorBoard (use_tensorboard); set it False")
    if config["ONE_CYCLE"] is not None and config["SCHEDULER"] is not None:
        problems.append("ONE_CYCLE and SCHEDULER are both set: the one-cycle policy is a schedule; keep one")
    if config["ONE_CYCLE"] is not None and not {"momentum", "betas"} & set(
        inspect.signature(config["OPTIMIZER"]).parameters
    ):
        problems.append(
            f"ONE_CYCLE cycles the momentum, which {config['OPTIMIZER'].__name__} has not: use an "
            "optimizer with momentum or betas (SGD, Adam, AdamW...)"
        )
    allowed = ["val_loss"] + [f"val_{name}" for name in config["METRICS"]]
    if config["CHECKPOINT_METRIC"] not in allowed:
        problems.append(f"CHECKPOINT_METRIC: {config['CHECKPOINT_METRIC']!r} is not logged; choose one of {allowed}")
    return problems


def set_key(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``KEY`` or a dotted ``KEY.arg`` (a keyword argument of a class in the config) to ``value``, in place."""
    *parents, last = key.split(".")
    if parents and parents[0] not in SCHEMA:
        raise ConfigError(f"unknown key {parents[0]!r} (see train.py --help)")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{part!r} is not a dict of keyword arguments")
    target[last] = value


# ---------------------------------------------------------------------------------------------------------------------
# Config as data: dotted names for classes and functions (config.json, checkpoints, experiments.csv)
# ---------------------------------------------------------------------------------------------------------------------


def dotted_name(obj: Any) -> str:
    """``module.QualName`` of a class or function, e.g. ``torch.optim.adamw.AdamW``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def to_jsonable(value: Any) -> Any:
    """A JSON-able copy of a config: classes and functions become dotted names, never reprs with addresses."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Path) or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)  # JSON has no paths, NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type) or inspect.isroutine(value):
        return dotted_name(value)
    # An instance (e.g. a transform): its class and its plain attributes, so that two configs compare equal.
    attributes = {key: to_jsonable(item) for key, item in vars(value).items() if not key.startswith("_")}
    arguments = ", ".join(f"{key}={json.dumps(item)}" for key, item in attributes.items())
    return f"{dotted_name(type(value))}({arguments})"


def import_object(path: str) -> Any:
    """Import ``package.module.Name`` (the inverse of :func:`dotted_name`)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        return obj
    raise ImportError(f"cannot import {path!r}")
