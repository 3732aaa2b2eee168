"""Optional parts of a run (e-mail, TensorBoard, ...): one module each in this folder, found by being here.

A project generated without an option has no module for it, and so none of its config keys, options or code.
Each module may define any of:

- ``CONFIG_KEYS``: ``{KEY: config.schema.Key(meaning, check, default)}``, its keys of the experiment config;
- ``add_arguments(parser)`` and ``apply_arguments(args, config)``: its options of train.py;
- ``make_hook(config) -> hook or None``: what it does during a run. A hook has any of the methods
  ``on_start(run)``, ``on_step(run, loss)``, ``on_epoch_end(run, row)``, ``on_finish(run, result)``, and
  ``state_dict()`` / ``load_state_dict(state)`` for its own entry in the run's checkpoints;
- ``on_evaluation(checkpoint, folder, log_dir)``: evaluate.py wrote the tables of ``checkpoint`` (the dict loaded
  from its file) into ``folder``;
- ``on_cross_validation(folder, log_dir)``: training/folds.py wrote a cross-validation's cv_summary.csv into
  ``folder`` (LOG_DIR/<cv_name>/, beside its cv.json).

Module functions, like a hook's ``on_finish``, report their own errors: the files they are told of are written.

Only rank 0 of a distributed run calls hooks. A hook's error in ``on_finish`` is its own to report: it must not
hide the run's outcome.
"""

import argparse
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any


def modules() -> list[ModuleType]:
    """The extension modules of this project, by name."""
    return [
        importlib.import_module(f"{__name__}.{name}") for name in sorted(m.name for m in pkgutil.iter_modules(__path__))
    ]


def config_keys() -> dict[str, Any]:
    """The config keys that the extensions declare."""
    return {key: spec for module in modules() for key, spec in getattr(module, "CONFIG_KEYS", {}).items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add each extension's train.py options."""
    for module in modules():
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)


def apply_arguments(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Put each extension's train.py options into ``config``."""
    for module in modules():
        if hasattr(module, "apply_arguments"):
            module.apply_arguments(args, config)


def make_hooks(config: dict[str, Any]) -> list[Any]:
    """The hooks of the extensions that ``config`` turns on."""
    hooks = (module.make_hook(config) for module in modules() if hasattr(module, "make_hook"))
    return [hook for hook in hooks if hook is not None]


def evaluated(checkpoint: dict[str, Any], folder: Path, log_dir: Path) -> None:
    """Tell each extension that evaluate.py wrote ``checkpoint``'s tables into ``folder``."""
    for module in modules():
        if hasattr(module, "on_evaluation"):
            module.on_evaluation(checkpoint, folder, log_dir)


def cross_validated(folder: Path, log_dir: Path) -> None:
    """Tell each extension that training/folds.py wrote the cv_summary.csv of the cross-validation in ``folder``."""
    for module in modules():
        if hasattr(module, "on_cross_validation"):
            module.on_cross_validation(folder, log_dir)
