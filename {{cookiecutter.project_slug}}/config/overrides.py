"""The config that a command line asks for: ``--config FILE``, ``--set KEY=VALUE`` (dotted keys), ``--epochs``.

``--set`` values are Python literals (``1e-3``, ``True``, ``[1, 2]``, ``None``), else importable dotted names
(``torch.optim.SGD``), else strings. train.py and hyperparameter.py share these options.
"""

import argparse
import ast
import copy
import importlib
from typing import Any

from config.merge import merge_config
from config.paths import ROOT_PATH
from config.schema import all_keys
from config.serialize import ConfigError, import_object, load_file_module

# The routines of this project: training/<name>_training.py.
ROUTINES = sorted(path.stem.removesuffix("_training") for path in (ROOT_PATH / "training").glob("*_training.py"))


def parse_value(text: str) -> Any:
    """A Python literal, else an importable dotted name, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if "." in text and all(part.isidentifier() for part in text.split(".")):
        try:
            return import_object(text)
        except ImportError:
            pass
    return text


def set_key(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``KEY`` or a dotted ``KEY.arg`` (a keyword argument in a ``*_CONFIG`` dict) to ``value``, in place."""
    *parents, last = key.split(".")
    if (parents[0] if parents else last) not in all_keys():
        raise ConfigError(f"unknown key {key.split('.')[0]!r} (train.py --help lists the keys)")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{part!r} is not a dict of keyword arguments")
    target[last] = value


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY=VALUE`` or ``KEY.sub.key=VALUE`` to ``config`` in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set OPTIMIZER_CONFIG.lr=1e-3")
    try:
        set_key(config, key.strip(), parse_value(text.strip()))
    except ConfigError as err:
        raise ConfigError(f"--set {assignment!r}: {err}") from None


def load_from_file(path: str, option: str, name: str) -> dict[str, Any]:
    """The dict ``name`` that the Python file ``path`` (given with ``option``) defines; a ConfigError if none.

    The file runs as a module, so that the classes and functions it defines are saved with the run by file and
    name (``path:Name``) and rebuilt from it by predict.py and resume.
    """
    try:
        namespace = vars(load_file_module(path))
    except ConfigError as err:
        raise ConfigError(f"{option} {err}") from None
    if not isinstance(namespace.get(name), dict):
        found = "no" if name not in namespace else f"a {type(namespace[name]).__name__} as"
        raise ConfigError(f"{option} {path}: the file defines {found} {name}; it must define {name} as a dict")
    return namespace[name]


def load_config(path: str | None) -> dict[str, Any]:
    """TRAIN_CONFIG of config/train_config.py, or a Python file's merged into it (config/merge.py); a deep copy."""
    defaults = importlib.import_module("config.train_config").TRAIN_CONFIG
    if path is None:
        return copy.deepcopy(defaults)
    return copy.deepcopy(merge_config(defaults, load_from_file(path, "--config", "TRAIN_CONFIG")))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--routine, --config, --set, --epochs and --init-from: the options that make the config."""
    parser.add_argument(
        "--routine", choices=ROUTINES, default=None, help="training routine (default: the config's ROUTINE)"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="Python file defining TRAIN_CONFIG: the keys it changes (see config/merge.py)"
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config key; repeatable; values are Python literals or dotted names",
    )
    parser.add_argument("--epochs", type=int, default=None, help="shortcut for --set EPOCHS=N")
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start from another run's weights: a checkpoint or run name (its best.pt); layers of other shapes "
        "stay initialised (shortcut for --set INIT_FROM=...; --set NORMALIZATION=init keeps its statistics)",
    )


def resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The config and the routine that the options of :func:`add_config_arguments` ask for."""
    config = load_config(args.config)
    for assignment in args.overrides:
        apply_override(config, assignment)
    if args.epochs is not None:
        config["EPOCHS"] = args.epochs
    if args.init_from is not None:
        config["INIT_FROM"] = args.init_from
    # A --config file that names no ROUTINE takes config/train_config.py's, as it does every key it leaves out.
    routine = args.routine or config.get("ROUTINE") or load_config(None)["ROUTINE"]
    if routine not in ROUTINES:
        raise ConfigError(f"routine {routine!r} is not in this project; available: {', '.join(ROUTINES)}")
    return config, routine
