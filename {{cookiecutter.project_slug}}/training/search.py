"""The pieces of hyperparameter.py's search: the space's distributions, its checks, the trials and the outputs.

A search space maps TRAIN_CONFIG's keys, dotted for keyword arguments (``"OPTIMIZER_CONFIG.lr"``), to a
distribution: :func:`uniform`, :func:`loguniform`, :func:`integer` or :func:`choice`. Every trial is a normal run of
a routine, with the study and the trial number in its experiments.csv row; Optuna samples the values (TPE) and
stops unpromising trials after an epoch (a median pruner fed by the routines through :class:`RunHooks`).
"""

import copy
import importlib
import inspect
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # PNGs only: no display is needed, and none exists on servers or in containers

import optuna  # noqa: E402  # pylint: disable=wrong-import-position
import pandas as pd  # noqa: E402  # pylint: disable=wrong-import-position
from optuna.trial import TrialState  # noqa: E402  # pylint: disable=wrong-import-position

from config.paths import ROOT_PATH, GlobalConfig  # noqa: E402  # pylint: disable=wrong-import-position
from training.common import LOGGER, RunHooks, RunPruned  # noqa: E402  # pylint: disable=wrong-import-position
from training.schema import (  # noqa: E402  # pylint: disable=wrong-import-position
    SCHEMA,
    ConfigError,
    dotted_name,
    import_object,
    set_key,
    to_jsonable,
    validate_config,
)
from utils.logging.csv import flatten, read_experiments  # noqa: E402  # pylint: disable=wrong-import-position

Plain = None | bool | int | float | str  # what Optuna stores as a choice; classes and functions go by dotted name

# ---------------------------------------------------------------------------------------------------------------------
# The distributions of a search space
# ---------------------------------------------------------------------------------------------------------------------


class Distribution:
    """What a search space maps a config key to."""

    def problem(self) -> str | None:
        """What is wrong with the distribution itself (None when nothing is)."""
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """The values that the config is checked with before the first trial."""
        raise NotImplementedError

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The trial's value for ``name``."""
        raise NotImplementedError


def _is_number(value: Any, kind: tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


@dataclass(frozen=True)
class Float(Distribution):
    """A float between ``low`` and ``high``, sampled on a log scale when ``log`` is true."""

    low: float
    high: float
    log: bool = False

    def problem(self) -> str | None:
        if not (_is_number(self.low) and _is_number(self.high)):
            return f"low and high must be numbers, got {self.low!r} and {self.high!r}"
        if self.low >= self.high:
            return f"empty range: low {self.low!r} must be below high {self.high!r}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got {self.low!r}"
        return None

    def extremes(self) -> list[Any]:
        return [float(self.low), float(self.high)]

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int(Distribution):
    """An int from ``low`` to ``high`` (both included) in steps of ``step``, or on a log scale."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def problem(self) -> str | None:
        if not all(_is_number(value, (int,)) for value in (self.low, self.high, self.step)):
            return f"low, high and step must be ints, got {self.low!r}, {self.high!r} and {self.step!r}"
        if self.low >= self.high:
            return f"empty range: low {self.low!r} must be below high {self.high!r}"
        if self.step < 1 or (self.log and self.step != 1):
            return f"step must be >= 1 (and 1 on a log scale), got {self.step!r}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got {self.low!r}"
        return None

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _encode(option: Any) -> Plain:
    """A choice's option as Optuna stores it: plain values as they are, classes and functions by dotted name."""
    return option if _is_plain(option) else dotted_name(option)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``options``: numbers, strings, booleans, None, or classes and functions that can be imported."""

    options: tuple[Any, ...]

    def problem(self) -> str | None:
        if len(self.options) < 2:
            return f"a choice needs two options or more, got {list(self.options)!r}"
        for option in self.options:
            if _is_plain(option):
                continue
            if not (isinstance(option, type) or inspect.isroutine(option)):
                return f"an instance of {type(option).__name__} is not a number, string, bool, None, class or function"
            try:
                importable = import_object(dotted_name(option)) is option
            except ImportError:
                importable = False
            if not importable:
                return (
                    f"option {option!r} cannot be imported by its name {dotted_name(option)!r}; "
                    "define it at the top level of a module"
                )
        encoded = [_encode(option) for option in self.options]
        if len(set(encoded)) < len(encoded):
            return f"options repeat: {encoded}"
        return None

    def extremes(self) -> list[Any]:
        return list(self.options)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        encoded = [_encode(option) for option in self.options]
        return self.options[encoded.index(trial.suggest_categorical(name, encoded))]


def uniform(low: float, high: float) -> Float:
    """A float drawn evenly between ``low`` and ``high``: ``"MODEL_CONFIG.dropout": uniform(0.0, 0.3)``."""
    return Float(low, high)


def loguniform(low: float, high: float) -> Float:
    """A float drawn evenly on a log scale (as many 1e-4..1e-3 as 1e-2..1e-1): learning rates, weight decays."""
    return Float(low, high, log=True)


def integer(low: int, high: int, step: int = 1, log: bool = False) -> Int:
    """An int from ``low`` to ``high``, both included: ``"MODEL_CONFIG.bulk_ch": integer(8, 32, step=8)``."""
    return Int(low, high, step, log)


def choice(*options: Any) -> Choice:
    """One of ``options``: ``"OPTIMIZER": choice(optim.AdamW, optim.SGD)``, ``"LOSS": choice(dice_bce, dice_loss)``."""
    return Choice(tuple(options))


# ---------------------------------------------------------------------------------------------------------------------
# Checking a search space against the config, before the first trial
# ---------------------------------------------------------------------------------------------------------------------


def _get_key(config: Mapping[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _type_problem(current: Any, value: Any) -> str | None:
    """Whether ``value`` can take the place of the config's ``current`` value (None: it can, or nothing to compare)."""
    kinds = [
        (bool, lambda v: isinstance(v, bool), "True or False"),
        (int, lambda v: _is_number(v, (int,)), "an int"),
        (float, _is_number, "a number"),
        (str, lambda v: isinstance(v, str), "a string"),
        (type, lambda v: isinstance(v, type), "a class"),
    ]
    for kind, fits, name in kinds:
        if isinstance(current, kind):
            return None if fits(value) else f"the config's value {current!r} is {name}, the space gives {value!r}"
    if callable(current) and not callable(value):
        return f"the config's value is a function, the space gives {value!r}"
    return None


def check_space(space: Any, config: dict[str, Any], refused: Mapping[str, str] | None = None) -> None:
    """Refuse a search space that could not run, with a ConfigError that names the key, before anything is written.

    Checked: the space is a dict of distributions over keys of the config's schema; each distribution is sound
    (a range that is not empty, options that can be imported); each extreme value has the config value's type, and
    the config with it passes :func:`validate_config` (e.g. OPTIMIZER_CONFIG.<arg> is an argument of OPTIMIZER).
    """
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"the search space must be a non-empty dict of config key -> distribution, got {space!r}")
    validate_config(config, refused)
    for key, distribution in space.items():
        where = f"search space key {key!r}"
        if not isinstance(key, str) or key.split(".")[0] not in SCHEMA:
            raise ConfigError(
                f"{where}: unknown key {str(key).split('.', maxsplit=1)[0]!r} (see train.py --help for the keys)"
            )
        if not isinstance(distribution, Distribution):
            raise ConfigError(f"{where}: expected uniform(), loguniform(), integer() or choice(), got {distribution!r}")
        problem = distribution.problem()
        if problem:
            raise ConfigError(f"{where}: {problem}")
        current = _get_key(config, key)
        for value in distribution.extremes():
            problem = _type_problem(current, value)
            if problem:
                raise ConfigError(f"{where}: wrong type: {problem}")
            changed = copy.deepcopy(config)
            try:
                set_key(changed, key, value)
                validate_config(changed, refused)
            except ConfigError as err:
                raise ConfigError(f"{where} = {value!r}: {err}") from None


def describe_space(space: Mapping[str, Distribution]) -> dict[str, str]:
    """The space as text, stored with a study so that a resumed search can be checked against it."""
    return {key: repr(to_jsonable(vars(distribution))) for key, distribution in space.items()}


# ---------------------------------------------------------------------------------------------------------------------
# The trials
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Search:
    """What every trial of a search shares: the config it starts from (CHECKPOINT_METRIC and CHECKPOINT_MODE set
    to the searched metric), the space, the routine and the metric."""

    study_name: str
    config: dict[str, Any]
    space: dict[str, Distribution]
    routine: str
    metric: str
    direction: str  # "minimize" or "maximize"
    global_config: GlobalConfig
    interrupt: KeyboardInterrupt | None = None  # the Ctrl-C or SIGTERM that stopped a trial

    def trial_config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The config with the trial's values."""
        config = copy.deepcopy(self.config)
        for key, value in values.items():
            set_key(config, key, value)
        return config

    def objective(self, trial: optuna.Trial) -> float:
        """Train one trial as a normal run; its value is the best epoch's metric."""
        values = {key: distribution.suggest(trial, key) for key, distribution in self.space.items()}

        def report(epoch: int, val: dict[str, float]) -> None:
            trial.report(val[self.metric], epoch)
            if epoch < self.config["EPOCHS"] and trial.should_prune():  # pruning the last epoch would save nothing
                raise RunPruned(
                    f"trial {trial.number} pruned after epoch {epoch}: {self.metric} {val[self.metric]:.4f} is "
                    "worse than the median of the earlier trials at that epoch"
                )

        hooks = RunHooks(row={"study": self.study_name, "trial": trial.number}, on_epoch=report)
        train = importlib.import_module(f"training.{self.routine}_training").train
        try:
            result = train(self.trial_config(values), self.global_config, hooks=hooks)
        except RunPruned as pruned:
            raise optuna.TrialPruned(str(pruned)) from pruned
        except KeyboardInterrupt as interrupt:
            # The run has recorded itself as interrupted. Optuna would log the interrupt's traceback; instead, the
            # trial ends as failed (NaN), marked to be run again by a resumed search, and the study stops.
            trial.set_user_attr("interrupted", True)
            self.interrupt = interrupt
            trial.study.stop()
            return math.nan
        except Exception as err:  # pylint: disable=broad-exception-caught  # a failed trial must not end the search
            # The run (if it started) has recorded and logged the error; NaN makes Optuna mark the trial failed.
            LOGGER.warning("trial %d failed: %s", trial.number, " ".join(f"{type(err).__name__}: {err}".split()))
            return math.nan
        return result.best[self.metric]


def database_path(global_config: GlobalConfig) -> Path:
    """The SQLite file that holds every study of the project."""
    return global_config.LOG_DIR / "search" / "optuna.db"


def storage(global_config: GlobalConfig) -> optuna.storages.RDBStorage:
    """The study storage (created on first use); parallel jobs wait up to a minute for SQLite's write lock."""
    path = database_path(global_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count towards ``--trials``: completed, pruned, or failed (an interrupted trial is run again)."""
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.state in done or (trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted"))
    ]


def retry_interrupted(study: optuna.Study) -> list[int]:
    """Queue the values of the trials that a stop interrupted, once each; returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get("retry_of") for trial in trials}
    interrupted = [
        trial
        for trial in trials
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in retried
    ]
    for trial in interrupted:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return [trial.number for trial in interrupted]


def make_sampler(seed: int, random_trials: int) -> optuna.samplers.BaseSampler:
    """TPE, after ``random_trials`` random ones; each parallel job gets its own seed so that they differ."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=random_trials)


def make_pruner(prune: bool, prune_after: int) -> optuna.pruners.BasePruner:
    """Median pruning once ``prune_after`` trials have finished: a trial whose epoch is worse than the median of
    the earlier trials at that epoch stops there (never at its last epoch, which would save nothing)."""
    return optuna.pruners.MedianPruner(n_startup_trials=prune_after) if prune else optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------------------------------
# What a search leaves: the table of trials, the best config, the plots
# ---------------------------------------------------------------------------------------------------------------------


def trials_table(study: optuna.Study, search: Search) -> pd.DataFrame:
    """One row a trial, best first: state, value, epochs trained, the values tried, and the trial's run."""
    metric = search.metric
    runs = read_experiments(search.global_config.LOG_DIR / "experiments.csv")
    runs = runs[runs["study"] == study.study_name] if "study" in runs else runs.iloc[0:0]
    run_of = {int(row["trial"]): row for _, row in runs.iterrows()}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        run = run_of.get(trial.number)
        state = "interrupted" if trial.user_attrs.get("interrupted") else trial.state.name.lower()
        rows.append(
            {
                "trial": trial.number,
                "state": {"complete": "completed", "fail": "failed"}.get(state, state),
                metric: trial.value,
                "epochs": None if run is None else int(run["epochs_completed"]),
                **trial.params,
                "run_name": None if run is None else run["run_name"],
            }
        )
    table = pd.DataFrame(rows, columns=["trial", "state", metric, "epochs", *search.space, "run_name"])
    if not rows:
        return table
    ascending = study.direction == optuna.study.StudyDirection.MINIMIZE
    order = {"completed": 0, "pruned": 1}  # completed trials first: a pruned trial's value is of an early epoch
    table["_order"] = table["state"].map(order).fillna(2)
    table = table.sort_values(["_order", metric], ascending=[True, ascending], na_position="last")
    return table.drop(columns="_order").reset_index(drop=True)


def _source(value: Any, imports: dict[str, str]) -> str:
    """Python source for a config value; a class or function adds its ``from module import Name`` to ``imports``."""
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, as ruff formats Python
    if _is_plain(value):
        return repr(value)
    top, *rest = value.__qualname__.split(".")
    line, alias = f"from {value.__module__} import {top}", top
    if imports.get(alias, line) != line:  # another module's class of the same name
        alias = f"{top}_{len(imports)}"
        line = f"{line} as {alias}"
    imports[alias] = line
    return ".".join([alias, *rest])


def best_config_source(
    search: Search,
    trial: optuna.trial.FrozenTrial,
    config_file: str | None,
    overrides: Sequence[str],
    epochs: int | None,
) -> str:
    """A config file that trains the best trial again: ``python train.py --config FILE``.

    It builds the config the way the search did (the same --config, --set and --epochs) and then sets the trial's
    values, so that it reads as the few lines that the search chose.
    """
    fixed = optuna.trial.FixedTrial(trial.params)  # the values as the trial drew them: objects for choices
    values = {key: distribution.suggest(fixed, key) for key, distribution in search.space.items()}
    assignments: list[str] = []
    imports: dict[str, str] = {}
    metric = {key: search.config[key] for key in ("CHECKPOINT_METRIC", "CHECKPOINT_MODE")}
    for key, value in {"ROUTINE": search.routine, **metric, **values}.items():
        source = _source(value, imports)
        *parents, last = key.split(".")
        target = "TRAIN_CONFIG" + "".join(f'["{part}"]' for part in parents)
        assignments.append(f'{target}["{last}"] = {source}')
    base = "None" if config_file is None else json.dumps(_relative(config_file))
    lines = [
        f'"""The best trial of search {search.study_name}: trial {trial.number}, {search.metric} {trial.value:.4f}.',
        "",
        f"Train it: python train.py --config {_relative(output_dir(search) / 'best_config.py')}",
        '"""',
        "",
        *sorted(imports.values()),
        "",
        "from train import apply_override, load_config",
        "",
        f"TRAIN_CONFIG = load_config({base})  # the config the search started from (--config)",
        *(f"apply_override(TRAIN_CONFIG, {json.dumps(assignment)})  # --set" for assignment in overrides),
        *([f'TRAIN_CONFIG["EPOCHS"] = {epochs}  # --epochs'] if epochs is not None else []),
        "# the search's routine and metric, and the best trial's values",
        *assignments,
        "",
    ]
    return "\n".join(lines)


def _relative(path: str | Path) -> str:
    """``path`` relative to the project root when it is inside it (config files are run from there)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT_PATH)) if resolved.is_relative_to(ROOT_PATH) else str(resolved)


def output_dir(search: Search) -> Path:
    """Where a search writes its table, best config and plots: LOG_DIR/search/<study>."""
    return search.global_config.LOG_DIR / "search" / search.study_name


def save_plots(study: optuna.Study, out_dir: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNGs; returns what was not drawn, and why."""
    # pylint: disable=import-outside-toplevel  # matplotlib's pyplot only once the backend is set (above)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    skipped = []
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", optuna.exceptions.ExperimentalWarning
        )  # the matplotlib plots are "experimental"
        axes = optuna_plots.plot_optimization_history(study)
        axes.figure.savefig(out_dir / "history.png", dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if completed < 2:
            skipped.append(f"importance.png: parameter importances need 2 completed trials or more, not {completed}")
        else:
            axes = optuna_plots.plot_param_importances(study)
            axes.figure.savefig(out_dir / "importance.png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
    return skipped


def write_outputs(
    study: optuna.Study, search: Search, config_file: str | None, overrides: Sequence[str], epochs: int | None
) -> Path:
    """trials.csv, best_config.py, history.png and importance.png in LOG_DIR/search/<study>; prints the table."""
    out_dir = output_dir(search)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = trials_table(study, search)
    table.to_csv(out_dir / "trials.csv", index=False)
    print(f"\nstudy {study.study_name}: {len(table)} trials, best first")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no completed trial yet: no best_config.py")
        return out_dir
    best = study.best_trial
    (out_dir / "best_config.py").write_text(
        best_config_source(search, best, config_file, overrides, epochs), encoding="utf-8"
    )
    for line in save_plots(study, out_dir):
        print(f"not drawn: {line}")
    print(f"best: trial {best.number}, {search.metric} {best.value:.4f}, {json.dumps(best.params)}")
    print(f"outputs: {out_dir}")
    return out_dir


def setup_record(search: Search) -> dict[str, Any]:
    """What a resumed search must share with the study it continues."""
    return {
        "routine": search.routine,
        "metric": search.metric,
        "space": describe_space(search.space),
        "config": {key: str(value) for key, value in flatten(to_jsonable(search.config)).items()},
    }


def setup_differences(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The differences between a study's setup and the setup of the search that continues it."""
    differences = [
        f"{name} (study: {stored.get(name)!r}, now: {now[name]!r})"
        for name in ("routine", "metric")
        if stored.get(name) != now[name]
    ]
    if stored.get("space") != now["space"]:
        differences.append("the search space")
    before, after = stored.get("config", {}), now["config"]
    differences += [
        f"{key} (study: {before.get(key)!r}, now: {after.get(key)!r})"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
    return differences
