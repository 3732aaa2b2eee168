"""Search hyperparameters with Optuna: ``python hyperparameter.py [--trials N] [--metric NAME] [--jobs N] ...``.

SEARCH_SPACE below (or the one of the file given with --space) says which config keys vary and how; everything
else comes from the config, as for train.py (--config, --set, --epochs, --routine). Every trial is a normal run
with its row in logs/experiments.csv; the study lives in logs/search/optuna.db, so that a stopped search goes on
with --resume; the table of trials, the best config and the plots land in logs/search/<study>/.
"""

import argparse
import importlib
import logging
import multiprocessing
import os
import shlex
import signal
import sys
from datetime import datetime
from typing import Any

import optuna
from torch import optim

from config.overrides import add_config_arguments, load_from_file, resolve_config
from config.paths import get_global_config
from config.schema import validate_config
from config.serialize import ConfigError
from train import USER_ERRORS, command_line, stop_on_sigterm
from training.build import LOGGER
from training.search import (
    Search,
    database_path,
    finished_trials,
    make_pruner,
    make_sampler,
    retry_interrupted,
    setup_differences,
    setup_record,
    storage,
)
from training.search_outputs import write_outputs
from training.search_space import check_space, choice, integer, loguniform, uniform
from utils.losses import dice_bce, smooth_dice_loss

# Config keys, dotted for keyword arguments, and how to draw them. Choices of classes need the same keyword
# arguments (AdamW and Adam both take lr and weight_decay); fixed values belong in the config, not here.
SEARCH_SPACE = {
    "OPTIMIZER": choice(optim.AdamW, optim.Adam),
    "OPTIMIZER_CONFIG.lr": loguniform(1e-4, 1e-2),
    "OPTIMIZER_CONFIG.weight_decay": loguniform(1e-6, 1e-2),
    "MODEL_CONFIG.base_channels": integer(8, 32, step=8),
    "MODEL_CONFIG.dropout": uniform(0.0, 0.3),
    "LOSS": choice(dice_bce, smooth_dice_loss),
}


def load_space(path: str | None) -> Any:
    """SEARCH_SPACE of a Python file, or of this file by default."""
    if path is None:
        return importlib.import_module("hyperparameter").SEARCH_SPACE  # also when this file runs as __main__
    return load_from_file(path, "--space", "SEARCH_SPACE")


def build_parser() -> argparse.ArgumentParser:
    """The command line of hyperparameter.py."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", maxsplit=1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20, help="trials the study should have in all (default: 20)")
    parser.add_argument(
        "--metric", default=None, help="val_loss or val_<metric> to optimise (default: the config's CHECKPOINT_METRIC)"
    )
    parser.add_argument(
        "--direction",
        choices=["minimize", "maximize"],
        default=None,
        help="default: minimize for a loss, maximize for a metric",
    )
    parser.add_argument("--space", metavar="FILE", default=None, help="Python file defining SEARCH_SPACE")
    parser.add_argument(
        "--study", default=None, help="study name (default: a new <SESSION_NAME>-<time>; with --resume, the latest)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the study up to --trials trials")
    parser.add_argument("--jobs", type=int, default=1, help="trials run in parallel, one process each (default: 1)")
    parser.add_argument(
        "--random-trials", type=int, default=10, help="trials sampled at random before TPE takes over (default: 10)"
    )
    parser.add_argument(
        "--prune-after",
        type=int,
        default=5,
        help="trials that finish before the median pruner stops any (default: 5)",
    )
    parser.add_argument("--no-prune", action="store_true", help="train every trial for all its epochs")
    add_config_arguments(parser)
    return parser


def prepare(args: argparse.Namespace, study_name: str = "") -> Search:
    """The search that the options ask for, checked in full before anything is written."""
    if min(args.trials, args.jobs) < 1 or min(args.random_trials, args.prune_after) < 0:
        raise ConfigError("--trials and --jobs must be >= 1, --random-trials and --prune-after >= 0")
    config, routine = resolve_config(args)
    refused = importlib.import_module(f"training.{routine}_training").REFUSED
    resolved = validate_config(config, refused)
    metric = args.metric or resolved["CHECKPOINT_METRIC"]
    direction = args.direction
    if direction is None:
        minimize = resolved["CHECKPOINT_MODE"] == "min" if args.metric is None else metric.endswith("loss")
        direction = "minimize" if minimize else "maximize"
    if resolved["FOLDS"] is not None and resolved["FOLD"] is None:  # a trial is one run: it scores one fold
        config["FOLD"] = 0
        LOGGER.info(
            "FOLDS=%d: every trial trains fold 0 and is scored on it (set FOLD for another); best_config.py keeps "
            "FOLDS, so that train.py --config best_config.py cross-validates the best trial", resolved["FOLDS"]
        )  # fmt: skip
    # best.pt and early stopping follow what the search optimises
    config.update(CHECKPOINT_METRIC=metric, CHECKPOINT_MODE="min" if direction == "minimize" else "max")
    space = load_space(args.space)
    check_space(space, config, refused)
    return Search(study_name, config, dict(space), routine, metric, direction, get_global_config())


def open_study(search: Search, args: argparse.Namespace) -> optuna.Study:
    """A new study, or with --resume the stopped one (same routine, metric, space and config)."""
    database = database_path(search.global_config)
    if args.resume and not database.is_file():
        raise ConfigError(f"--resume: no study to continue ({database} does not exist)")
    store = storage(search.global_config)
    names = {summary.study_name: summary for summary in optuna.get_all_study_summaries(store)}
    if not args.resume:
        name = args.study or f"{search.config['SESSION_NAME']}-{datetime.now():%Y%m%d-%H%M%S}"
        if name in names:
            raise ConfigError(f"study {name!r} exists already; continue it with --resume, or choose another --study")
        study = optuna.create_study(study_name=name, storage=store, direction=search.direction)
        study.set_user_attr("setup", setup_record(search))
        return study
    if args.study is None and names:
        name = max(names.values(), key=lambda summary: summary.datetime_start or datetime.min).study_name
    else:
        name = args.study
    if name not in names:
        raise ConfigError(f"--resume: no study {name!r} in {database}; studies: {', '.join(sorted(names)) or 'none'}")
    study = optuna.load_study(study_name=name, storage=store)
    search.study_name = name
    differences = setup_differences(study.user_attrs.get("setup", {}), setup_record(search))
    if differences:
        raise ConfigError(
            f"--resume {name}: the search differs from the study's in {', '.join(differences[:4])}"
            f"{' and more' if len(differences) > 4 else ''}; resume with the study's options"
        )
    return study


def run_trials(search: Search, args: argparse.Namespace, n_trials: int, job: int = 0) -> None:
    """Run ``n_trials`` trials of the study in this process.

    The sampler's seed is the config's SEED plus the job and the trials the study holds already: each parallel job
    draws its own values, and a resumed search goes on drawing new ones instead of replaying the first trials.
    """
    study = optuna.load_study(study_name=search.study_name, storage=storage(search.global_config))
    seed = validate_config(search.config)["SEED"] + job + len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(seed, args.random_trials)
    study.pruner = make_pruner(not args.no_prune, args.prune_after)
    study.optimize(search.objective, n_trials=n_trials)
    if search.interrupt is not None:
        raise search.interrupt


def _job(args: argparse.Namespace, study_name: str, n_trials: int, job: int) -> None:
    """One of --jobs processes: its own trials of the shared study."""
    os.setsid()  # a Ctrl-C in the terminal reaches the parent alone, which passes it on once to every job
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[job {job}] %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        run_trials(prepare(args, study_name), args, n_trials, job)
    except KeyboardInterrupt as interrupt:
        sys.exit(128 + getattr(interrupt, "signum", signal.SIGINT))


def run_jobs(search: Search, args: argparse.Namespace, n_trials: int) -> int:
    """Run the trials in ``--jobs`` processes that share the study's database; returns a signal that stopped them
    (0 if none). Processes rather than threads: each job handles Ctrl-C and SIGTERM as a training run does."""
    jobs = min(args.jobs, n_trials)
    if jobs == 1:
        try:
            run_trials(search, args, n_trials)
        except KeyboardInterrupt as interrupt:
            return getattr(interrupt, "signum", signal.SIGINT)
        return 0
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state inherited from this one
    counts = [n_trials // jobs + (job < n_trials % jobs) for job in range(jobs)]
    processes = [
        context.Process(target=_job, args=(args, search.study_name, count, job)) for job, count in enumerate(counts)
    ]
    stopped = 0

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopped
        if not stopped:  # once: a second signal would cut short the recording of the interrupted runs
            stopped = signum
            LOGGER.warning("stopping: the running trials record what they have done and end")
            for process in processes:
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed = [process.exitcode for process in processes if process.exitcode not in (0, 128 + stopped)]
    if failed and not stopped:
        LOGGER.warning("%d job(s) ended with exit status %s", len(failed), failed)
    return stopped or next((code - 128 for code in failed if code > 128), 0)


def continue_command(argv: list[str], study_name: str) -> str:
    """The command that continues the study: the same options, with --study and --resume."""
    options, skip = [], False
    for arg in argv:
        if skip or arg == "--resume" or arg.startswith("--study="):
            skip = False
            continue
        skip = arg == "--study"
        if not skip:
            options.append(arg)
    return shlex.join(["python", "hyperparameter.py", *options, "--study", study_name, "--resume"])


def search_main(args: argparse.Namespace, argv: list[str]) -> int:
    """Check, open the study, run the trials that it lacks, and write the outputs; returns the exit status."""
    search = prepare(args)
    study = open_study(search, args)
    search.study_name = study.study_name
    retried = retry_interrupted(study) if args.resume else []
    if retried:
        LOGGER.info("trials %s were interrupted: their values are tried again first", retried)
    n_trials = args.trials - len(finished_trials(study))
    LOGGER.info(
        "study %s: %d trial(s) to run, %d job(s), %s %s, routine %s",
        study.study_name,
        max(n_trials, 0),
        min(args.jobs, max(n_trials, 1)),
        search.direction,
        search.metric,
        search.routine,
    )
    signum = run_jobs(search, args, n_trials) if n_trials > 0 else 0
    write_outputs(study, search, args.config, args.overrides, args.epochs)
    if signum:
        done = len(finished_trials(study))
        print(f"search stopped after {done} of {args.trials} trials; continue it with: ")
        print(continue_command(argv, study.study_name))
        return 128 + signum
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2: a bad option, config or search space)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        with command_line():
            return search_main(args, argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
