"""Compare runs: the experiments table of ``logs/experiments.csv``, best run first, and the curves of chosen runs.

Run from the project root (or ``make report ARGS="..."``)::

    python -m utils.tracking.report                                  # every run, best val dice first
    python -m utils.tracking.report --session unet_shapes --routine pytorch,ignite --last 10
    python -m utils.tracking.report --metric val_loss                # a loss sorts lowest first
    python -m utils.tracking.report --plot latest 20250101-120000_unet_shapes_pytorch
    python -m utils.tracking.report --session unet_shapes --plot     # the curves of every run the table shows

Exit status: 0 when a table was printed; 1 when the filters leave no run (as with grep, "nothing matched" is an
answer, not a failure, but a script can still tell it apart); 2 on an error: no experiments.csv yet, an unknown
column or run, or runs without any history.csv to plot.
"""

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pandas.api.types import is_numeric_dtype

from config.paths import get_global_config

# The compact table shows at most this many hyper-parameters that differ between the runs: more would wrap the
# table on a laptop screen. The others are named under the table, and --all-columns shows them.
MAX_PARAMETER_COLUMNS = 6
# A bare --plot draws the best runs of the table, but more lines than colours in matplotlib's cycle cannot be told
# apart.
MAX_PLOT_RUNS = 10
FIGSIZE, DPI = (12.0, 4.5), 100  # 1200 x 450 pixels
# Config keys that repeat a column the table already has (routine) or that the run name holds (session).
DUPLICATE_KEYS = {"SESSION_NAME", "ROUTINE"}
# A class or function saved in the config as "module.QualName": the compact table shows its last part only.
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class ReportError(ValueError):
    """A problem the user fixes by changing the command (or by training first); the message is one line."""


# ---------------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------------


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
    """The column to sort by: ``metric`` if given, else best_val_dice, else the first best_val_* score (a loss only
    if there is nothing else).

    A given name may leave out the ``best_`` prefix (``val_loss``) or ``best_val_`` (``iou``). Returns None when no
    metric was given and no run has finished an epoch yet (the table is then shown newest first).
    """
    if metric is None:
        best_val = [c for c in table.columns if c.startswith("best_val_")]
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
    outcome = ["run_name", "routine", "status", "epochs_completed", "best_epoch", *best_val]
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
    lines = []
    for row in range(-1, len(table)):  # row -1 is the header
        parts = []
        for column, values in cells.items():
            width = max([len(column), *map(len, values)])
            text = column if row < 0 else values[row]
            numeric = is_numeric_dtype(table[column]) and table[column].dtype != bool
            parts.append(text.rjust(width) if numeric else text.ljust(width))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The curves
# ---------------------------------------------------------------------------------------------------------------------


def resolve_runs(table: pd.DataFrame, names: Sequence[str], latest_among: pd.DataFrame | None = None) -> list[str]:
    """Run names for ``names``: an exact name, the unique start of one (``20250101-1200``), or ``latest``.

    ``latest`` is the newest run of ``latest_among`` (default: ``table``), so that with filters it means the newest
    run that passes them (``--routine ignite --plot latest``); if none does, it names nothing.
    """
    runs = newest_first(table)["run_name"].astype(str).tolist()
    pool = table if latest_among is None else latest_among
    resolved: list[str] = []
    for name in names:
        if name == "latest":
            resolved.extend(newest_first(pool)["run_name"].astype(str).head(1))
            continue
        matches = [name] if name in runs else [run for run in runs if run.startswith(name)]
        if len(matches) != 1:
            hint = f"it starts {len(matches)} run names" if matches else f"latest runs: {', '.join(runs[:5])}"
            raise ReportError(f"unknown run {name!r} for --plot ({hint})")
        resolved.extend(matches)
    return list(dict.fromkeys(resolved))  # a run named twice is drawn once


def history_path(log_dir: Path, row: pd.Series) -> Path:
    """history.csv of a run: under LOG_DIR, or in the run_dir it was written to (LOG_DIR may have moved since)."""
    path = log_dir / str(row["run_name"]) / "history.csv"
    if not path.is_file() and isinstance(row.get("run_dir"), str):
        path = Path(row["run_dir"]) / "history.csv"
    return path


def curve_metric(metric: str | None, histories: Iterable[pd.DataFrame]) -> str | None:
    """The validation score to draw beside the losses: the sorted one if it is a score, else val_dice or the first."""
    columns = [c for history in histories for c in history.columns if c.startswith("val_") and c != "val_loss"]
    if metric is not None:
        name = metric.removeprefix("best_").removeprefix("final_")
        if name in columns:
            return name
    return "val_dice" if "val_dice" in columns else next(iter(columns), None)


def plot_runs(histories: dict[str, pd.DataFrame], output: Path, metric: str | None = None) -> Figure:
    """Overlay the runs' losses (left) and a validation score (right) per epoch, save the PNG, return the figure.

    One colour per run in both panels; on the left the validation loss is solid and the training loss dashed.
    The returned figure is detached from pyplot (no global state, nothing to close), so tests can inspect it.
    """
    score = curve_metric(metric, histories.values())
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax_loss, ax_score = fig.subplots(1, 2)
    for index, (run, history) in enumerate(histories.items()):
        # Markers keep a run of a single epoch visible: a line needs two points.
        style = {"color": f"C{index % MAX_PLOT_RUNS}", "marker": "o", "markersize": 3}
        if "val_loss" in history.columns:
            ax_loss.plot(history["epoch"], history["val_loss"], label=run, **style)
        if "train_loss" in history.columns:
            ax_loss.plot(history["epoch"], history["train_loss"], linestyle="--", **style)
        if score is not None and score in history.columns:
            ax_score.plot(history["epoch"], history[score], label=run, **style)
    ax_loss.set_title("loss (solid: val, dashed: train)")
    ax_score.set_title(score or "no validation score in history.csv")
    for axis in (ax_loss, ax_score):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if ax_score.lines:
        ax_score.legend(fontsize="small")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    return fig


def _plot(table: pd.DataFrame, log_dir: Path, output: Path, metric: str | None) -> Path:
    """Read the history.csv of each run of ``table`` (in its order) and draw them into ``output``."""
    histories: dict[str, pd.DataFrame] = {}
    for _, row in table.iterrows():
        path = history_path(log_dir, row)
        if path.is_file():
            histories[str(row["run_name"])] = pd.read_csv(path)
        else:
            # A run that failed or was stopped before its first epoch has no curve; the others still do.
            print(f"note: {row['run_name']} has no history.csv (no epoch finished); left out of the plot")
    if not histories:
        raise ReportError("none of these runs has a history.csv yet: nothing to plot")
    plot_runs(histories, output, metric)
    return output


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m utils.tracking.report``."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.tracking.report",
        description="The runs of logs/experiments.csv (or $LOG_DIR), best first; --plot overlays their curves.",
        epilog="Exit status: 0 table printed, 1 no run matches the filters, 2 error.",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="column to sort by: any column, e.g. best_val_iou, final_val_dice, val_loss (= best_val_loss), duration_s "
        "(default: best_val_dice, else the first best_val_* score)",
    )
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--ascending",
        dest="ascending",
        action="store_true",
        default=None,
        help="lowest first (default for columns ending in 'loss' and for duration_s)",
    )
    order.add_argument(
        "--descending", dest="ascending", action="store_false", help="highest first (default for other columns)"
    )
    parser.add_argument(
        "--session", action="append", help="only these sessions (repeatable, comma lists, shell patterns: 'unet*')"
    )
    parser.add_argument("--routine", action="append", help="only these routines (repeatable, comma lists)")
    parser.add_argument(
        "--status", action="append", help="only runs with this status: completed, interrupted, failed, pruned, running"
    )
    parser.add_argument("--last", type=_positive_int, default=None, metavar="N", help="only the N most recent runs")
    parser.add_argument(
        "--all-columns",
        action="store_true",
        help="every column of experiments.csv, classes by their full dotted path (default: outcome, metrics and "
        "the hyper-parameters that differ between the runs shown, classes by their name)",
    )
    parser.add_argument(
        "--plot",
        nargs="*",
        default=None,
        metavar="RUN",
        help="overlay the curves of these runs (names, 'latest', or the unique start of a name) in one PNG, "
        f"and show only them; without names: the runs of the table (the best {MAX_PLOT_RUNS})",
    )
    parser.add_argument("--output", type=Path, default=None, help="PNG of --plot (default: LOG_DIR/report.png)")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _no_match_message(table: pd.DataFrame, args: argparse.Namespace) -> str:
    """Say which filters were given and which values exist, so that a typo is easy to spot."""
    filters = {name: getattr(args, name) for name in ("session", "routine", "status")}
    given = [f"--{name} {','.join(values)}" for name, values in filters.items() if values]
    if args.plot:
        given.insert(0, f"--plot {' '.join(args.plot)}")
    known = [
        f"{label}: {', '.join(sorted(table[column].dropna().astype(str).unique()))}"
        for label, column in (("sessions", "session_name"), ("routines", "routine"), ("statuses", "status"))
        if column in table.columns
    ]
    return f"no run matches {' '.join(given)} ({'; '.join(known)})"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 table, 1 no matching run, 2 error)."""
    args = build_parser().parse_args(argv)
    for name in ("session", "routine", "status"):
        setattr(args, name, split_values(getattr(args, name)))
    log_dir = get_global_config().LOG_DIR
    try:
        table = load_experiments(log_dir)
        metric = choose_metric(table, args.metric)
        selected = select_runs(table, args.session, args.routine, args.status)
        if args.plot:
            selected = selected[selected["run_name"].astype(str).isin(resolve_runs(table, args.plot, selected))]
        if args.last is not None:
            selected = newest_first(selected).head(args.last)
        if selected.empty:
            print(_no_match_message(table, args), file=sys.stderr)
            return 1
        selected = sort_best_first(selected, metric, args.ascending)
        columns, hidden = report_columns(selected, metric, args.all_columns)
        if metric is None:
            order = "newest first (no run has a best_val_* metric yet)"
        else:
            ascending = lower_is_better(metric) if args.ascending is None else args.ascending
            order = f"best first by {metric} ({'lowest' if ascending else 'highest'} first)"
        print(f"{len(selected)} of {len(table)} runs in {log_dir / 'experiments.csv'}, {order}")
        print(format_table(selected[columns], compact=not args.all_columns))
        if hidden:
            print(f"also differ: {', '.join(hidden)} (--all-columns shows them)")
        if args.plot is not None:
            plotted = selected if args.plot else selected.head(MAX_PLOT_RUNS)
            print(f"plot: {_plot(plotted, log_dir, args.output or log_dir / 'report.png', metric)}")
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
