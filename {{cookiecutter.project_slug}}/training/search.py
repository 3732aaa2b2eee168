"""The trials of a search: the objective that trains one, the study's storage, sampler and pruner, its setup record.

Every trial is a normal run of a routine, with the study and the trial number in its experiments.csv row; Optuna
samples the values (TPE) and stops unpromising trials after an epoch (a median pruner fed by the routines through
:class:`TrialHook`). The space is in :mod:`training.search_space`; what a search leaves, in
:mod:`training.search_outputs`.
"""

import copy
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from config.overrides import set_key
from config.paths import GlobalConfig
from config.serialize import to_jsonable
from training.build import LOGGER
from training.run import StopRun
from training.search_space import Distribution, describe_space
from utils.tracking.csv_logs import flatten


class TrialHook:
    """A trial's part in its run: its study and number in the run's experiments.csv row, each epoch's value reported
    to Optuna, and a stop (recorded as ``pruned``) when the median pruner says so."""

    def __init__(self, trial: optuna.Trial, study_name: str, metric: str, epochs: int) -> None:
        self.trial, self.metric, self.epochs = trial, metric, epochs
        self.columns = {"study": study_name, "trial": trial.number}

    def on_epoch_end(self, run: Any, row: dict[str, float]) -> None:  # pylint: disable=unused-argument
        """Report the epoch's value; prune the trial (never at its last epoch, which would save nothing)."""
        epoch, value = int(row["epoch"]), row[self.metric]
        if math.isnan(value):  # undefined (docs/data.md): never compared, so not reported for the pruner to compare
            return
        self.trial.report(value, epoch)
        if epoch < self.epochs and self.trial.should_prune():
            raise StopRun(
                "pruned",
                f"trial {self.trial.number} pruned after epoch {epoch}: {self.metric} {value:.4f} is worse than the "
                "median of the earlier trials at that epoch",
            )


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

        hook = TrialHook(trial, self.study_name, self.metric, self.config["EPOCHS"])
        train = importlib.import_module(f"training.{self.routine}_training").train
        try:
            result = train(self.trial_config(values), self.global_config, hooks=[hook])
        except StopRun as pruned:
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
        return result.best.get(self.metric, math.nan)  # no epoch with a defined value: NaN, a failed trial


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
