"""The cross-validations of ``python -m utils.tracking.report --cv``: LOG_DIR/<cv_name>/ (training/folds.py) read,
its cv_summary.csv as a table and a figure of each fold's value beside the mean and the out-of-fold value.

The headline is last.pt's: each fold's last epoch, chosen on nothing. best.pt was chosen on the very images it is
scored on, so its figures are shown beside, labelled optimistic. NaN is an undefined value (a metric with nothing to
count on any image of a fold, docs/data.md): shown as ``nan``, skipped by the mean and the spread, never drawn.
notebooks/explore_runs.ipynb calls the same functions.
"""

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from utils.tracking.report_table import ReportError, align, newest_first

SUMMARY, HEADLINE, OPTIMISTIC = "cv_summary.csv", "last.pt", "best.pt"
FOLD_COLUMNS = ["fold", "run_name", "status", "epochs_completed", "best_epoch", "duration_s"]
PANEL_INCHES, DPI = 4.5, 100  # each metric's panel of the folds figure


class SummaryPendingError(ReportError):
    """The cross-validation exists but has folds still to train or score: no cv_summary.csv to show yet."""


def cross_validations(log_dir: Path) -> pd.DataFrame:
    """One row per cross-validation in ``log_dir`` (a folder with a cv.json), newest first: ``cv_name``, ``folds``
    (K), ``runs`` (folds with a run so far), ``summary`` (whether cv_summary.csv is written) and ``started_at``:
    the start of its newest fold run in experiments.csv (else cv.json's time), by which ``latest`` is the first."""
    runs = pd.DataFrame()
    if (log_dir / "experiments.csv").is_file():
        runs = pd.read_csv(log_dir / "experiments.csv", usecols=lambda c: c in ("cv_name", "started_at"))
    rows = []
    for path in sorted(log_dir.glob("*/cv.json")):
        state = json.loads(path.read_text(encoding="utf-8"))
        name = state.get("cv_name", path.parent.name)
        started = runs.loc[runs["cv_name"] == name, "started_at"].dropna() if "cv_name" in runs else []
        fallback = datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
        rows.append({
            "cv_name": name, "folds": state.get("folds"), "runs": len(state.get("runs", {})),
            "summary": (path.parent / SUMMARY).is_file(), "started_at": max(started, default=fallback),
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=["cv_name", "folds", "runs", "summary", "started_at"])
    return table.sort_values(["started_at", "cv_name"], ascending=False, kind="stable").reset_index(drop=True)


def resolve_cv(log_dir: Path, name: str = "latest") -> Path:
    """The folder of the cross-validation ``name``: its exact name, the unique start of one, or ``latest``.

    Raises:
        ReportError: there is no cross-validation in ``log_dir``, or ``name`` matches none or several.
    """
    names = cross_validations(log_dir)["cv_name"].tolist()
    if not names:
        raise ReportError(f"no cross-validation in {log_dir} yet: python train.py --folds K makes one")
    matches = names[:1] if name == "latest" else [name] if name in names else [n for n in names if n.startswith(name)]
    if len(matches) != 1:
        hint = f"it starts {len(matches)} names" if matches else f"cross-validations: {', '.join(names[:5])}"
        raise ReportError(f"unknown cross-validation {name!r} ({hint})")
    return log_dir / matches[0]


def fold_runs(folder: Path) -> pd.DataFrame:
    """Each fold's run (cv.json) with its experiments.csv row: fold, run, status, epochs, duration, and the
    ``final_val_*`` scores, those of last.pt on the fold's own validation images. A fold without a run yet is
    ``not started``."""
    state = json.loads((folder / "cv.json").read_text(encoding="utf-8"))
    path = folder.parent / "experiments.csv"
    rows = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["run_name"])
    rows = newest_first(rows).drop_duplicates("run_name").set_index("run_name")
    table = []
    for fold in range(int(state["folds"])):
        run = state["runs"].get(str(fold))
        row = rows.loc[run].to_dict() if run in rows.index else {}
        table.append({**row, "fold": fold, "run_name": run or "-", "status": row.get("status", "not started")})
    table = pd.DataFrame(table)
    scores = [c for c in table.columns if c.startswith("final_val_")]
    return table[[c for c in FOLD_COLUMNS if c in table.columns] + scores]


def read_summary(folder: Path) -> pd.DataFrame:
    """cv_summary.csv of the cross-validation in ``folder`` ("nan" read as NaN: undefined).

    Raises:
        SummaryPendingError: its folds are not all trained and scored yet (the message names those still to do).
    """
    path = folder / SUMMARY
    if not path.is_file():
        folds = int(json.loads((folder / "cv.json").read_text(encoding="utf-8"))["folds"])
        todo = [str(fold) for fold in range(folds) if not (folder / f"fold_{fold}.json").is_file()]
        raise SummaryPendingError(
            f"cross-validation {folder.name} has no {SUMMARY} yet: fold(s) {', '.join(todo)} of {folds} still to "
            f"train or score (python train.py --folds {folds} --resume {folder.name} with its config)"
        )
    return pd.read_csv(path)


def fold_names(summary: pd.DataFrame) -> list[str]:
    """The fold columns of a summary, fold_0 to fold_<K-1>, in order."""
    return sorted((c for c in summary.columns if c.startswith("fold_")), key=lambda c: int(c.split("_")[1]))


def metrics_of(summary: pd.DataFrame) -> list[str]:
    """The metric names of a summary (history.csv's: val_dice, val_dice_pooled, val_dice_<class>, ...)."""
    return list(dict.fromkeys(summary["metric"].astype(str)))


def related_metrics(summary: pd.DataFrame, metric: str) -> list[str]:
    """``metric`` and its variants in the summary: ``val_dice`` -> val_dice, val_dice_pooled, val_dice_<class>..."""
    return [name for name in metrics_of(summary) if name == metric or name.startswith(f"{metric}_")]


def choose_cv_metric(summary: pd.DataFrame, metric: str | None = None) -> str:
    """A summary's metric: ``metric`` (``val_dice``, ``dice``, or a report column ``best_val_dice``), else val_dice,
    else the first.

    Raises:
        ReportError: ``metric`` is not one of the summary's.
    """
    names = metrics_of(summary)
    if metric is None:
        return "val_dice" if "val_dice" in names else names[0]
    bare = metric.removeprefix("best_").removeprefix("final_")
    for candidate in (bare, f"val_{bare}"):
        if candidate in names:
            return candidate
    raise ReportError(f"unknown metric {metric!r} of the cross-validation; available: {', '.join(names)}")


def figure_metrics(summary: pd.DataFrame, metric: str | None = None) -> list[str]:
    """The panels of :func:`plot_folds` by default: the metric of :func:`choose_cv_metric` and its pooled value."""
    chosen = choose_cv_metric(summary, metric)
    return [name for name in (chosen, f"{chosen}_pooled") if name in metrics_of(summary)]


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: last.pt's ``mean``, ``std``, ``folds`` (with a value), ``out_of_fold`` and each fold,
    then best.pt's ``optimistic_mean`` and ``optimistic_out_of_fold``. NaN: undefined."""
    last = summary[summary["checkpoint"] == HEADLINE].set_index("metric")
    best = summary[summary["checkpoint"] == OPTIMISTIC].set_index("metric")
    table = last[["mean", "std", "folds", "out_of_fold", *fold_names(summary)]].copy()
    table["optimistic_mean"] = best["mean"].reindex(table.index)
    table["optimistic_out_of_fold"] = best["out_of_fold"].reindex(table.index)
    return table


def _number(value: float) -> str:
    return "nan" if pd.isna(value) else f"{value:.4f}"


def format_summary(summary: pd.DataFrame) -> str:
    """cv_summary.csv as text: per checkpoint, one line per metric with ``mean ± std``, the number of folds with
    a value, the out-of-fold value and each fold's; last.pt first (the headline), best.pt labelled optimistic."""
    blocks = []
    for checkpoint, title in ((HEADLINE, "the headline: each fold's last epoch, chosen on nothing"),
                              (OPTIMISTIC, "optimistic: chosen on the very images it is scored on")):  # fmt: skip
        rows = summary[summary["checkpoint"] == checkpoint]
        if rows.empty:
            continue
        cells = {
            "metric": rows["metric"].astype(str).tolist(),
            "mean ± std": [f"{_number(m)} ± {_number(s)}" for m, s in zip(rows["mean"], rows["std"], strict=True)],
            "folds": [f"{int(n)}/{len(fold_names(summary))}" for n in rows["folds"]],
            "out_of_fold": [_number(value) for value in rows["out_of_fold"]],
            **{column: [_number(value) for value in rows[column]] for column in fold_names(summary)},
        }
        blocks.append(f"{checkpoint} ({title})\n{align(cells, right=set(cells) - {'metric'})}")
    return "\n\n".join(blocks)


def plot_folds(summary: pd.DataFrame, metrics: Sequence[str], output: Path | None = None) -> Figure:
    """One panel per metric: each fold's value of last.pt (filled dots) and best.pt (hollow, optimistic), last.pt's
    mean (solid line) with ± std (band) and out-of-fold value (dashed). Saved as a PNG with ``output``; returned
    detached from pyplot (a notebook shows it). An undefined fold is not drawn, and its tick says so.

    Raises:
        ReportError: a metric that the summary does not have.
    """
    folds = fold_names(summary)
    fig = Figure(figsize=(PANEL_INCHES * len(metrics), PANEL_INCHES), dpi=DPI)
    for axis, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        rows = summary[summary["metric"] == metric].set_index("checkpoint")
        if HEADLINE not in rows.index:
            raise ReportError(f"unknown metric {metric!r} of the cross-validation; available: "
                              f"{', '.join(metrics_of(summary))}")  # fmt: skip
        last, positions = rows.loc[HEADLINE], range(len(folds))
        axis.plot(positions, last[folds].astype(float), "o", color="C0", label=f"{HEADLINE} per fold")
        if OPTIMISTIC in rows.index:
            best = rows.loc[OPTIMISTIC][folds].astype(float)
            axis.plot(positions, best, "o", color="C1", fillstyle="none", label=f"{OPTIMISTIC} (optimistic)")
        mean, std, oof = (float(last[key]) for key in ("mean", "std", "out_of_fold"))
        if not math.isnan(mean):
            axis.axhline(mean, color="C0", label=f"mean {mean:.4f} ± {_number(std)}")
            if not math.isnan(std):
                axis.axhspan(mean - std, mean + std, color="C0", alpha=0.15)
        if not math.isnan(oof):
            axis.axhline(oof, color="C2", linestyle="--", label=f"out-of-fold {oof:.4f}")
        axis.set_xticks(list(positions), [f"{c}" + ("\n(undefined)" if pd.isna(last[c]) else "") for c in folds])
        axis.set_xlim(-0.5, len(folds) - 0.5)
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)  # not over a fold
    fig.tight_layout()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output)
    return fig
