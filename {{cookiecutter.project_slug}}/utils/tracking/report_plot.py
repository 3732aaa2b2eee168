"""The curves of ``python -m utils.tracking.report --plot``: runs named on the command line, their history.csv, one PNG.

:func:`resolve_runs` turns names into runs, :func:`read_histories` reads their history.csv, :func:`plot_runs` overlays
their losses and a validation score (notebooks/explore_runs.ipynb calls the same three).
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.tracking.report_table import ReportError, newest_first

# A bare --plot draws the best runs of the table, but more lines than colours in matplotlib's cycle cannot be told
# apart.
MAX_PLOT_RUNS = 10
FIGSIZE, DPI = (12.0, 4.5), 100  # 1200 x 450 pixels


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


def plot_runs(histories: dict[str, pd.DataFrame], output: Path | None = None, metric: str | None = None) -> Figure:
    """Overlay the runs' losses (left) and a validation score (right) per epoch, save the PNG (with ``output``),
    return the figure (a notebook shows it).

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
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output)
    return fig


def read_histories(table: pd.DataFrame, log_dir: Path) -> dict[str, pd.DataFrame]:
    """run name -> history.csv of each run of ``table``, in its order; a run without one (stopped or failed before
    its first epoch) is named in a note and left out. ReportError when none has one."""
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
    return histories


def plot_histories(table: pd.DataFrame, log_dir: Path, output: Path, metric: str | None) -> Path:
    """Read the history.csv of each run of ``table`` (in its order) and draw them into ``output``."""
    plot_runs(read_histories(table, log_dir), output, metric)
    return output
