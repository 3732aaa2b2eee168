"""The runs table of ``python -m utils.tracking.report``: experiments.csv read, filtered, sorted best first, formatted.

Each function is one step of the table, so that a notebook can use them on its own; :class:`ReportError` is the
one-line error that the command line prints (exit status 2).
"""

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

# The compact table shows at most this many hyper-parameters that differ between the runs: more would wrap the
# table on a laptop screen. The others are named under the table, and --all-columns shows them.
MAX_PARAMETER_COLUMNS = 6
# Config keys that repeat a column the table already has (routine, a cross-validation's fold) or that the run name
# holds (session).
DUPLICATE_KEYS = {"SESSION_NAME", "ROUTINE", "FOLD"}
# A cross-validation's runs (training/folds.py): which one and which fold, shown when a run of the table has them.
CV_COLUMNS = ["cv_name", "fold"]
# A class or function saved in the config as "module.QualName": the compact table shows its last part only.
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class ReportError(ValueError):
    """A problem the user fixes by changing the command (or by training first); the message is one line."""


def load_experiments(log_dir: Path) -> pd.DataFrame:
    """experiments.csv of ``log_dir`` as a DataFrame; ReportError if no run was recorded there yet."""
    path = log_dir / "experiments.csv"
    try:
        table = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        table = pd.DataFrame()
    if table.empty:
        raise ReportError(f"no runs yet in {log_dir}: train first")
    return table


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of experiments.csv: ``best_*`` and ``final_*`` (best_epoch is an epoch, not a metric)."""
    return [c for c in table.columns if c.startswith(("best_", "final_")) and c != "best_epoch"]


def choose_metric(table: pd.DataFrame, metric: str | None = None) -> str | None:
    """The column to sort by: ``metric`` if given, else best_val_dice, else the first best_val_* score with a value
    (a loss only if there is nothing else). NaN values (undefined metrics) sort last.

    A given name may leave out the ``best_`` prefix (``val_loss``) or ``best_val_`` (``iou``). Returns None when no
    metric was given and no run has finished an epoch yet (the table is then shown newest first).
    """
    if metric is None:  # a column without any value (a class that never occurs: NaN) cannot order the runs
        best_val = [c for c in table.columns if c.startswith("best_val_") and table[c].notna().any()]
        scores = [c for c in best_val if not lower_is_better(c)]
        return "best_val_dice" if "best_val_dice" in best_val else next(iter(scores + best_val), None)
    for candidate in (metric, f"best_{metric}", f"best_val_{metric}"):
        if candidate in table.columns:
            return candidate
    available = ", ".join(metric_columns(table)) or "none yet (no run has finished an epoch)"
    raise ReportError(f"unknown metric column {metric!r}; available: {available}")


def lower_is_better(metric: str) -> bool:
    """Whether a metric sorts ascending by default: losses (and durations) do, scores do not."""
    return metric.endswith(("loss", "duration_s"))


def split_values(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _matches(column: pd.Series, patterns: list[str]) -> pd.Series:
    # Shell-style patterns ("unet*") cost nothing to allow, and an exact name still matches only itself.
    return column.astype(str).map(lambda value: any(fnmatchcase(value, pattern) for pattern in patterns))


def newest_first(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by start time, newest first (run names start with the start time, so they break ties)."""
    keys = [c for c in ("started_at", "run_name") if c in table.columns]
    return table.sort_values(keys, ascending=False, kind="stable")


def select_runs(
    table: pd.DataFrame,
    sessions: Sequence[str] = (),
    routines: Sequence[str] = (),
    statuses: Sequence[str] = (),
) -> pd.DataFrame:
    """The rows whose session, routine and status match (any pattern of each list; an empty list matches all)."""
    keep = pd.Series(True, index=table.index)
    for column, patterns in (("session_name", sessions), ("routine", routines), ("status", statuses)):
        if patterns:
            keep &= _matches(table[column], list(patterns)) if column in table.columns else False
    return table[keep]


def sort_best_first(table: pd.DataFrame, metric: str | None, ascending: bool | None = None) -> pd.DataFrame:
    """Best run first by ``metric`` (ascending for losses unless told otherwise); runs without a value last."""
    if metric is None:
        return newest_first(table)
    if ascending is None:
        ascending = lower_is_better(metric)
    # Among equal values the newer run comes first: a re-run that ties is the one to look at.
    return newest_first(table).sort_values(metric, ascending=ascending, na_position="last", kind="stable")


def parameter_columns(table: pd.DataFrame) -> list[str]:
    """The flattened hyper-parameters: the columns of config keys, which are UPPER_CASE (``OPTIMIZER_CONFIG.lr``).

    The run's own record (status, metrics, versions, error, ...) is lower_case, so new record columns never pass for
    hyper-parameters.
    """
    return [c for c in table.columns if str(c).split(".", maxsplit=1)[0].isupper() and c not in DUPLICATE_KEYS]


def differing_columns(table: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Those of ``columns`` whose value is not the same in every row (a missing value counts as a value)."""
    return [c for c in columns if table[c].nunique(dropna=False) > 1]


def report_columns(table: pd.DataFrame, metric: str | None, all_columns: bool = False) -> tuple[list[str], list[str]]:
    """(columns to show, differing hyper-parameters left out) for the rows of ``table``.

    The compact set answers "which run is best, and what made it different": identity and outcome columns,
    the best validation metrics, and the hyper-parameters that differ between these runs.
    """
    if all_columns:
        return list(table.columns), []
    best_val = [c for c in table.columns if c.startswith("best_val_")]
    folds = [c for c in CV_COLUMNS if c in table.columns and table[c].notna().any()]
    outcome = ["run_name", "routine", "status", *folds, "epochs_completed", "best_epoch", *best_val]
    if metric is not None and metric not in outcome:
        outcome.append(metric)  # the sort column is always shown, e.g. --metric final_val_dice
    outcome.append("duration_s")
    differing = differing_columns(table, parameter_columns(table))
    shown = [c for c in outcome if c in table.columns] + differing[:MAX_PARAMETER_COLUMNS]
    return shown, differing[MAX_PARAMETER_COLUMNS:]


def _format_float(value: float, column: str) -> str:
    if pd.isna(value):
        return "-"
    if column.startswith(("best_", "final_")) and column != "best_epoch":
        return f"{value:.4f}"
    if column == "duration_s":
        return f"{value:.1f}"
    # An integer column holding a missing value is read as float by pandas: show 3, not 3.0.
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


def _format_cell(value: object, column: str, compact: bool) -> str:
    if isinstance(value, float):
        return _format_float(value, column)
    text = "-" if value is None else str(value)
    return text.rsplit(".", maxsplit=1)[-1] if compact and DOTTED_NAME.match(text) else text


def format_table(table: pd.DataFrame, compact: bool = True) -> str:
    """An aligned text table: numbers right-aligned, text left-aligned, one line per row."""
    cells = {c: [_format_cell(v, c, compact) for v in table[c].tolist()] for c in table.columns}
    numeric = {c for c in table.columns if is_numeric_dtype(table[c]) and table[c].dtype != bool}
    return align(cells, numeric)


def align(cells: dict[str, list[str]], right: Iterable[str] = ()) -> str:
    """Column name -> its cells as text, as aligned lines: the ``right`` columns right-aligned, the others left."""
    right, lines = set(right), []
    rows = len(next(iter(cells.values()), []))
    for row in range(-1, rows):  # row -1 is the header
        parts = []
        for column, values in cells.items():
            width = max([len(column), *map(len, values)])
            text = column if row < 0 else values[row]
            parts.append(text.rjust(width) if column in right else text.ljust(width))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
