"""Train a model: ``python train.py [--routine NAME] [--config FILE] [--set KEY=VALUE ...] [--epochs N]``.

The experiment is the TRAIN_CONFIG dict of config/train_config.py (or of the file given with --config); options
on the command line change a copy of it. Every run writes its logs under LOG_DIR and its weights under WEIGHT_DIR.
"""

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import extensions
from config.device import DeviceError
from config.overrides import add_config_arguments, resolve_config
from config.paths import get_global_config
from config.schema import all_keys
from config.serialize import ConfigError
from training.build import LOGGER
from training.checkpoint import CheckpointError
from training.distributed import close_distributed, launched_world_size
from training.folds import cross_validate
from training.records import RunResult, one_line
from training.sanity_checks import SanityCheckError
from training.signals import Interrupted
from utils.data.images import DataError

# Errors that a user fixes by changing the command, the config or the data: one line, no traceback.
USER_ERRORS = (ConfigError, DataError, DeviceError, CheckpointError, SanityCheckError)
CONSOLE = logging.StreamHandler()  # progress lines on stderr; each run also copies them to its train.log
CONSOLE.setFormatter(logging.Formatter("%(message)s"))
# The routines that start their own processes (--nproc-per-node); the others run under torchrun.
SPAWNING_ROUTINES = ("ignite",)


def build_parser() -> argparse.ArgumentParser:
    """The command line of train.py; --help lists every config key with its meaning."""
    keys = "\n".join(f"  {key:<20} {spec.meaning}" for key, spec in all_keys().items())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", maxsplit=1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"config keys (--set KEY=VALUE, dotted for kwargs: --set MODEL_CONFIG.base_channels=32):\n{keys}",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", metavar="RUN", help="continue a run: 'latest', a run name or a checkpoint path (default: a new run)"
    )
    parser.add_argument(
        "--nproc-per-node",
        metavar="N",
        type=int,
        default=None,
        help="ignite routine: train with N processes started by ignite.distributed (one per GPU; gloo on the CPU); "
        "other routines: use torchrun --nproc_per_node=N train.py or make train-ddp NPROC=N (default: 1 process)",
    )
    parser.add_argument("--folds", metavar="K", type=int, help="cross-validation: train K folds in turn (FOLDS)")
    parser.add_argument("--fold", metavar="I", type=int, help="train fold I (0..K-1) of --folds K only (FOLD)")
    extensions.add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> RunResult:
    """Resolve the config from the arguments and train it with the chosen routine."""
    config, routine = resolve_config(args)
    extensions.apply_arguments(args, config)
    config.update({key: value for key, value in (("FOLDS", args.folds), ("FOLD", args.fold)) if value is not None})
    options = {} if args.nproc_per_node is None else {"nproc_per_node": args.nproc_per_node}
    if options and routine not in SPAWNING_ROUTINES:
        nproc = args.nproc_per_node
        raise ConfigError(
            f"--nproc-per-node is for the ignite routine; start the {routine} routine with "
            f"torchrun --nproc_per_node={nproc} train.py ... (or make train-ddp NPROC={nproc})"
        )
    if config.get("FOLDS") is not None:  # a cross-validation: a run per fold (training/folds.py)
        return cross_validate(config, get_global_config(), routine, args.resume, **options)
    module = importlib.import_module(f"training.{routine}_training")
    return module.train(config, get_global_config(), resume=args.resume, **options)


def fail(message: str) -> int:
    """Print ``error: message`` on stderr in one write (the ranks of torchrun share it: lines stay whole); exit 2."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return 2


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
    previous_hook, threading.excepthook = threading.excepthook, log_thread_error
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        threading.excepthook = previous_hook


def log_thread_error(args: threading.ExceptHookArgs) -> None:
    """A background thread's error (TensorBoard's writer on a full disk) as one warning line, not a traceback: the
    run itself fails, or not, in the main thread."""
    name = args.thread.name if args.thread is not None else "a background thread"
    LOGGER.warning("%s in %s: %s", args.exc_type.__name__, name, " ".join(str(args.exc_value).split()))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2: a mistake in the command, config or data)."""
    args = build_parser().parse_args(argv)
    try:
        with command_line():
            result = run(args)
        close_distributed(wait=True)
    except USER_ERRORS as err:
        return fail(one_line(err))
    except FloatingPointError as err:  # a NaN loss: the run is recorded failed, its last good epoch kept in last.pt
        kept = "last.pt keeps its last complete epoch, if any"  # a NaN in the first epoch leaves no last.pt
        return fail(f"{err}; the run failed; {kept} (lower the lr?)")
    except OSError as err:  # a folder that cannot be written, a full disk: the machine's, not the code's
        where = f": {err.filename}" if err.filename else ""
        return fail(f"{err.strerror or err}{where}: free space, or set LOG_DIR and WEIGHT_DIR to a folder with room")
    except KeyboardInterrupt as interrupt:  # the run has logged how to resume it
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    finally:
        close_distributed()
    if int(os.environ.get("RANK", "0")) != 0:  # the run's summary once, from rank 0
        return 0
    print(result.report())
    return 0


if __name__ == "__main__":
    STATUS = main()
    if launched_world_size() > 1:
        # A process of torchrun ends here, its files written and its process group destroyed: skip the interpreter's
        # finalization, where gloo's worker threads can still abort it ("terminate called without an active
        # exception", exit -6) after a run that went well (see pytorch/pytorch#179291).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STATUS)
    sys.exit(STATUS)
