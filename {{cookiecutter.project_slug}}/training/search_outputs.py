"""What a search leaves in LOG_DIR/search/<study>: the table of trials, the best trial's config file, the plots.

:func:`write_outputs` writes them all and prints the table; the other functions are its parts.
"""

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # PNGs only: no display is needed, and none exists on servers or in containers

import optuna  # noqa: E402  # pylint: disable=wrong-import-position
import pandas as pd  # noqa: E402  # pylint: disable=wrong-import-position
from optuna.trial import TrialState  # noqa: E402  # pylint: disable=wrong-import-position

from config.paths import ROOT_PATH  # noqa: E402  # pylint: disable=wrong-import-position
from training.search import Search  # noqa: E402  # pylint: disable=wrong-import-position
from training.search_space import is_plain  # noqa: E402  # pylint: disable=wrong-import-position
from utils.tracking.csv_logs import read_experiments  # noqa: E402  # pylint: disable=wrong-import-position


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
    if is_plain(value):
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
        "from config.overrides import apply_override, load_config",
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
