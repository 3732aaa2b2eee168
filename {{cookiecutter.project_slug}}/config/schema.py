"""The config keys: what each means and how it is checked; ``validate_config`` checks a whole config.

A new key is one line in SCHEMA below, plus its value in config/train_config.py, which is where every key's default
lives: a key that a config (a --config file) leaves out takes the value of config/train_config.py. Keys of an
optional part of the project (e-mail, TensorBoard) are declared in that part's own file under ``extensions/``.
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

import extensions
from config.checks import (
    Check,
    callable_or_none,
    class_names,
    compile_kwargs,
    dict_of,
    floor_dict,
    int_at_least,
    kwargs_dict,
    mask_values,
    metrics_dict,
    number_in,
    of_type,
    one_of,
    positive_int,
    positive_int_or_none,
    scheduler_checks,
    signature_problem,
    task_checks,
)
from config.serialize import ConfigError
from utils.metric_sums import metric_columns

DEFAULT_IN_TRAIN_CONFIG = object()


@dataclass(frozen=True)
class Key:
    """One config key: its meaning (shown by train.py --help), its check, and (for extensions) its default."""

    meaning: str
    check: Check
    default: Any = DEFAULT_IN_TRAIN_CONFIG


_INT, _STR, _BOOL = of_type(int, name="an int"), of_type(str, name="a string"), of_type(bool, name="True or False")
TASKS = ("binary", "multiclass", "multilabel")

SCHEMA: dict[str, Key] = {
    "SESSION_NAME": Key("name of the experiment series; part of every run name", _STR),
    "ROUTINE": Key("default training routine (train.py --routine overrides it)", _STR),
    "SEED": Key("seed of every random number generator, the data split and the batch order", _INT),
    "DEVICE": Key("auto | cpu | cuda | cuda:N | mps", _STR),
    "TASK": Key("binary | multiclass | multilabel: sigmoid, softmax or per-label sigmoid outputs", one_of(*TASKS)),
    "CLASSES": Key("class names in output-channel order (binary: one, the foreground)", class_names),
    "IGNORE_INDEX": Key(
        "multiclass: a mask value (e.g. 255), or an 'r,g,b' colour with MASK_VALUES, counted in no loss or metric",
        of_type(int, str, tuple, list, name="an int, an 'r,g,b' colour", optional=True),
    ),
    "MASK_VALUES": Key("None, or {mask value or 'r,g,b' colour: class index} for coded masks", mask_values),
    "MASK_THRESHOLD": Key(
        "binary/multilabel: mask values above it are set (None: above 0); needed for JPEG masks, e.g. 127 for 0/255",
        number_in(-1e-300, float("inf"), ">= 0", optional=True),
    ),
    "MODEL": Key("the model: a class or function returning an nn.Module, called with MODEL_CONFIG", callable_or_none()),
    "MODEL_CONFIG": Key("keyword arguments of MODEL", kwargs_dict),
    "DATASET": Key("dataset class (or function) returning (image, mask) pairs", callable_or_none()),
    "DATASET_CONFIG": Key("keyword arguments of DATASET", kwargs_dict),
    "VAL_DATASET": Key("validation dataset; None splits VAL_FRACTION off DATASET", callable_or_none(optional=True)),
    "VAL_DATASET_CONFIG": Key("keyword arguments of VAL_DATASET", kwargs_dict),
    "VAL_FRACTION": Key("share of DATASET held out for validation (seeded split)", number_in(0, 1, "in (0, 1)")),
    "VAL_GROUPS": Key(
        "None, a regex whose first group names a file's scene, or a CSV of stem,group: a group stays on one side",
        of_type(str, name="a regex or CSV path", optional=True),
    ),
    "FOLDS": Key(
        "k-fold cross-validation over DATASET: the number of folds (train.py --folds K); None: one split",
        int_at_least(2),
    ),
    "FOLD": Key(
        "with FOLDS: the one fold that validates, 0..FOLDS-1 (train.py --fold I); None: every fold in turn",
        int_at_least(0),
    ),
    "PATCH_SIZE": Key("train on random square patches of this size; None: whole images", positive_int_or_none),
    "PATCH_FOREGROUND": Key("share of patches centred on a labelled pixel", number_in(-1e-300, 1 + 1e-12, "in [0, 1]")),
    "NORMALIZATION": Key(
        "meanstd | percentile (1st-99th) per band, from the training set | None | init (INIT_FROM's statistics)",
        one_of("meanstd", "percentile", None, "init"),
    ),
    "NODATA": Key(
        "an image value meaning no data (NaN always does); None for none",
        of_type(int, float, name="a number", optional=True),
    ),
    "TRAIN_TRANSFORM": Key(
        "paired (image, mask) augmentation of training samples; None for none", callable_or_none(True)
    ),
    "DATA_LOADER_CONFIG": Key("keyword arguments of torch's DataLoader (batch_size, num_workers, ...)", kwargs_dict),
    "OPTIMIZER": Key("optimizer class (or function), called with the model's parameters", callable_or_none()),
    "OPTIMIZER_CONFIG": Key("keyword arguments of OPTIMIZER (lr, weight_decay, ...)", kwargs_dict),
    "SCHEDULER": Key("lr scheduler stepped once per epoch; None for a constant lr", callable_or_none(optional=True)),
    "SCHEDULER_CONFIG": Key(
        "keyword arguments of SCHEDULER; its length (T_max, ...) follows EPOCHS if unset", kwargs_dict
    ),
    "ONE_CYCLE": Key(
        "{'max_lr': float, 'pct_start': 0.3}: the one-cycle policy, stepped every batch, instead of SCHEDULER",
        dict_of({"max_lr": number_in(0, float("inf"), "> 0"), "pct_start": number_in(0, 1, "in (0, 1)")}, ("max_lr",)),
    ),
    "LR_FIND": Key("a learning-rate range test first; train with its suggestion (ignite, fastai)", _BOOL),
    "LOSS": Key(
        "loss(logits, target) -> scalar (the mean over samples): a function, or a class to call", callable_or_none()
    ),
    "LOSS_CONFIG": Key("keyword arguments of LOSS (class_weights, ...)", kwargs_dict),
    "METRICS": Key("name -> metric(logits, target, task), logged per class and as val_<name>", metrics_dict),
    "INIT_FROM": Key(
        "a checkpoint or run name whose weights start this run", of_type(str, name="a path", optional=True)
    ),
    "EPOCHS": Key("number of epochs", positive_int),
    "MIXED_PRECISION": Key(
        "False | True (fp16 on CUDA, bf16 elsewhere) | 'bf16' | 'fp16'", one_of(False, True, "bf16", "fp16")
    ),
    "CHANNELS_LAST": Key(
        "model and batches in channels-last memory format (faster with mixed precision on GPUs)", _BOOL
    ),
    "COMPILE": Key("torch.compile the model: False | True | a dict of torch.compile kwargs", compile_kwargs),
    "GRAD_CLIP": Key("max gradient norm; None disables clipping", number_in(0, float("inf"), "> 0", optional=True)),
    "EARLY_STOPPING": Key(
        "{'patience': epochs without improvement, 'min_delta': smallest improvement} or None",
        dict_of({"patience": positive_int, "min_delta": number_in(-1e-300, float("inf"), ">= 0")}, ("patience",)),
    ),
    "CHECKPOINT_METRIC": Key(
        "val_loss, val_<metric>[_pooled] or val_<metric>_<class>: picks best.pt, drives early stopping", _STR
    ),
    "CHECKPOINT_MODE": Key("min | max; None: min for losses, max for metrics", one_of(None, "min", "max")),
    "LOGFILE": Key("copy the run's log lines to logs/<run>/train.log", _BOOL),
    "TEST_FOLDER": Key(
        "a labelled folder that tests/test_trained_model.py evaluates", of_type(str, name="a path", optional=True)
    ),
    "QUALITY_FLOOR": Key("metric name -> the least mean over TEST_FOLDER's images that the test accepts", floor_dict),
    "COMMENT": Key("free text stored with the run", _STR),
}

# DataLoader arguments that the routines set themselves (seeded shuffling), so that a config cannot.
_LOADER_OWNED = {"dataset", "shuffle", "sampler", "batch_sampler", "generator"}


def all_keys() -> dict[str, Key]:
    """SCHEMA and the keys of this project's extensions."""
    return {**SCHEMA, **extensions.config_keys()}


def validate_config(config: Mapping[str, Any], refused: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check every key and return the config with the missing keys filled in (from config/train_config.py).

    Every problem (unknown or wrong keys, keyword arguments a class does not take, keys the routine cannot honour:
    ``refused``, key -> why, for keys not at their default) is reported in one ConfigError, before anything is written.
    """
    from config.train_config import TRAIN_CONFIG  # pylint: disable=import-outside-toplevel  # it imports the models

    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a dict, got {type(config).__name__}")
    keys = all_keys()
    problems = [
        f"unknown key {key!r} (a new key is declared with one line in config/schema.py; train.py --help lists them)"
        for key in config
        if key not in keys
    ]
    defaults = {key: TRAIN_CONFIG.get(key, spec.default) for key, spec in keys.items()}
    resolved = {key: copy.deepcopy(config[key] if key in config else defaults[key]) for key in keys}
    for key, spec in keys.items():
        if resolved[key] is DEFAULT_IN_TRAIN_CONFIG:
            problems.append(f"missing key {key!r}: {spec.meaning}")
        elif problem := spec.check(resolved[key]):
            problems.append(f"{key}: {problem}")
    if not problems:
        problems += _cross_checks(resolved)
        problems += [f"{key}: {why}" for key, why in (refused or {}).items() if resolved[key] != defaults[key]]
    if problems:
        raise ConfigError("; ".join(problems))
    if resolved["CHECKPOINT_MODE"] is None:
        resolved["CHECKPOINT_MODE"] = "min" if resolved["CHECKPOINT_METRIC"].endswith("loss") else "max"
    return resolved


def _cross_checks(config: dict[str, Any]) -> list[str]:
    problems = []
    for key, n_positional in (("MODEL", 0), ("DATASET", 0), ("VAL_DATASET", 0), ("OPTIMIZER", 1), ("SCHEDULER", 1)):
        if config[key] is not None:
            problem = signature_problem(config[key], config[f"{key}_CONFIG"], n_positional)
            problems += [f"{key}_CONFIG: {problem}"] if problem else []
        elif config[f"{key}_CONFIG"]:
            problems.append(f"{key}_CONFIG is set but {key} is None")
    if owned := _LOADER_OWNED & set(config["DATA_LOADER_CONFIG"]):
        problems.append(f"DATA_LOADER_CONFIG: {sorted(owned)} are set by the routine (seeded shuffling)")
    if problem := signature_problem(DataLoader, config["DATA_LOADER_CONFIG"], 1):
        problems.append(f"DATA_LOADER_CONFIG: {problem}")
    if config["FOLDS"] is None and config["FOLD"] is not None:
        problems.append("FOLD is set but FOLDS is None: set FOLDS, the number of folds (train.py --folds K)")
    elif config["FOLDS"] is not None and config["FOLD"] is not None and config["FOLD"] >= config["FOLDS"]:
        problems.append(f"FOLD={config['FOLD']} but FOLDS={config['FOLDS']}: folds are 0..{config['FOLDS'] - 1}")
    if config["FOLDS"] is not None and config["VAL_DATASET"] is not None:
        problems.append("FOLDS splits DATASET into folds, so a VAL_DATASET has no place: set VAL_DATASET None")
    if config["ONE_CYCLE"] is not None and config["SCHEDULER"] is not None:
        problems.append("ONE_CYCLE and SCHEDULER are both set: the one-cycle policy is a schedule; set SCHEDULER None")
    problems += task_checks(config) + scheduler_checks(config)
    try:  # val_<metric>, its pooled value val_<metric>_pooled, and but for binary val_<metric>_<class>
        columns = metric_columns(config["METRICS"], config["CLASSES"], config["TASK"])
    except ValueError as err:  # TASK and CLASSES that do not fit (said above already), or a column name twice
        return problems or [f"METRICS: {err}"]
    allowed = ["val_loss", *(f"val_{column}" for column in columns)]
    if config["CHECKPOINT_METRIC"] not in allowed:
        problems.append(f"CHECKPOINT_METRIC: {config['CHECKPOINT_METRIC']!r} is not logged; choose one of {allowed}")
    return problems
