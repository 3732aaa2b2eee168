"""Train a model: ``python train.py [--routine NAME] [--config FILE] [--set KEY=VALUE ...] [--epochs N]``.

The experiment is the TRAIN_CONFIG dict of config/train_config.py (or of the file given with --config); options
on the command line change a copy of it. Every run writes its logs under LOG_DIR and its weights under WEIGHT_DIR.
"""

import argparse
import ast
import copy
import importlib
import logging
import os
import runpy
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config.config import ROOT_PATH, get_global_config
from config.device import DeviceError
from training.common import LOGGER, Interrupted, PreflightError, RunResult
from training.distributed import close_distributed
from training.schema import SCHEMA, ConfigError, import_object, set_key
from utils.data.datasets import DataError
from utils.torchutils import CheckpointError

# Errors that a user fixes by changing the command or the config: one line, no traceback.
USER_ERRORS = (ConfigError, DataError, DeviceError, CheckpointError, PreflightError)
CONSOLE = logging.StreamHandler()  # progress lines on stderr; each run also copies them to its train.log
CONSOLE.setFormatter(logging.Formatter("%(message)s"))
ROUTINES = sorted(path.stem.removesuffix("_training") for path in (ROOT_PATH / "training").glob("*_training.py"))
# The routines that start their own processes (--nproc-per-node); the others run under torchrun.
SPAWNING_ROUTINES = ("ignite",)


def parse_value(text: str) -> Any:
    """A Python literal (``1e-3``, ``True``, ``[1, 2]``, ``None``), else an importable dotted name, else a string."""
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


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY=VALUE`` or ``KEY.sub.key=VALUE`` to ``config`` in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set OPTIMIZER_CONFIG.lr=1e-3")
    try:
        set_key(config, key.strip(), parse_value(text.strip()))
    except ConfigError as err:
        raise ConfigError(f"--set {assignment!r}: {err}") from None


def load_from_file(path: str, option: str, name: str) -> Any:
    """The dict ``name`` that the Python file ``path`` (given with ``option``) defines; a ConfigError if it does not."""
    if not Path(path).is_file():
        raise ConfigError(f"{option} {path}: no such file")
    namespace = runpy.run_path(path)
    if name not in namespace:
        raise ConfigError(f"{option} {path}: the file defines no {name} dict")
    return namespace[name]


def load_config(path: str | None) -> dict[str, Any]:
    """TRAIN_CONFIG of a Python file, or of config/train_config.py by default (always a deep copy)."""
    if path is None:
        config = importlib.import_module("config.train_config").TRAIN_CONFIG
    else:
        config = load_from_file(path, "--config", "TRAIN_CONFIG")
    return copy.deepcopy(config)


def keys_help() -> str:
    """The config keys and their meaning, for --help."""
    lines = ["config keys (--set KEY=VALUE, dotted for kwargs: --set MODEL_CONFIG.bulk_ch=32):"]
    for key, spec in SCHEMA.items():
        lines.append(f"  {key:<20} {spec.doc}")
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--routine, --config, --set and --epochs: the options that make the config (train.py, hyperparameter.py)."""
    parser.add_argument(
        "--routine", choices=ROUTINES, default=None, help="training routine (default: the config's ROUTINE)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="Python file defining TRAIN_CONFIG (default: config/train_config.py)",
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


def build_parser() -> argparse.ArgumentParser:
    """The command line of train.py."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", maxsplit=1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=keys_help(),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--notify",
        metavar="ADDRESS",
        default=None,
        help="e-mail the outcome to ADDRESS (comma-separated for several); shortcut for --set NOTIFY=...",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue a run: 'latest', a run name or a checkpoint path (default: a new run)",
    )
    parser.add_argument(
        "--nproc-per-node",
        metavar="N",
        type=int,
        default=None,
        help="ignite routine: train with N processes started by ignite.distributed (one per GPU; gloo on the CPU); "
        "other routines: use torchrun --nproc_per_node=N train.py or make train-ddp NPROC=N (default: 1 process)",
    )
    return parser


def resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The config and the routine that the options of :func:`add_config_arguments` ask for."""
    config = load_config(args.config)
    for assignment in args.overrides:
        apply_override(config, assignment)
    if args.epochs is not None:
        config["EPOCHS"] = args.epochs
    routine = args.routine or config.get("ROUTINE", "pytorch")
    if routine not in ROUTINES:
        raise ConfigError(f"routine {routine!r} is not in this project; available: {', '.join(ROUTINES)}")
    return config, routine


def run(args: argparse.Namespace) -> RunResult:
    """Resolve the config from the arguments and train it with the chosen routine."""
    config, routine = resolve_config(args)
    if args.notify is not None:
        config["NOTIFY"] = args.notify
    module = importlib.import_module(f"training.{routine}_training")
    if args.nproc_per_node is None:
        return module.train(config, get_global_config(), resume=args.resume)
    if routine not in SPAWNING_ROUTINES:
        nproc = args.nproc_per_node
        raise ConfigError(
            f"--nproc-per-node is for the ignite routine; start the {routine} routine with "
            f"torchrun --nproc_per_node={nproc} train.py ... (or make train-ddp NPROC={nproc})"
        )
    return module.train(config, get_global_config(), resume=args.resume, nproc_per_node=args.nproc_per_node)


def stop_on_sigterm(signum: int, _frame: Any) -> None:
    """Before and after a run, SIGTERM stops like Ctrl-C; during a run, the Run handles both signals itself."""
    raise Interrupted(signum)


@contextmanager
def command_line() -> Iterator[None]:
    """What a command (train.py, hyperparameter.py) sets up: progress lines on the console, SIGTERM as Ctrl-C."""
    if CONSOLE not in LOGGER.handlers:
        LOGGER.addHandler(CONSOLE)
    LOGGER.setLevel(logging.INFO)
    previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        with command_line():
            result = run(args)
        close_distributed(wait=True)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # the run has logged how to resume it
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    finally:
        close_distributed()
    if int(os.environ.get("RANK", "0")) != 0:  # the run's summary once, from rank 0
        return 0
    best = ", ".join(f"{key} {value:.4f}" for key, value in result.best.items())
    print(f"run {result.run_name} {result.status}: best epoch {result.best_epoch} ({best})")
    print(f"logs: {result.run_dir}\nweights: {result.weight_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
