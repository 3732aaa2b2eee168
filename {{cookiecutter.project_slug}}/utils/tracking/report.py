"""Compare runs: the experiments table of ``logs/experiments.csv``, best run first, and the curves of chosen runs.

Run from the project root (or ``make report ARGS="..."``)::

    python -m utils.tracking.report                                  # every run, best val dice first
    python -m utils.tracking.report --session unet_shapes --routine pytorch,ignite --last 10
    python -m utils.tracking.report --metric val_loss                # a loss sorts lowest first
    python -m utils.tracking.report --plot latest 20250101-120000_unet_shapes_pytorch
    python -m utils.tracking.report --session unet_shapes --plot     # the curves of every run the table shows
    python -m utils.tracking.report --cv                             # the latest cross-validation's summary
    python -m utils.tracking.report --cv unet_shapes_cv5 --metric dice --plot   # and each fold's dice, in a PNG

Exit status: 0 when a table was printed; 1 when the filters leave no run, or the cross-validation of --cv has folds
still to train (as with grep, "nothing matched" is an answer, not a failure, but a script can still tell it apart);
2 on an error: no experiments.csv yet, an unknown column, run, cross-validation or metric, no cross-validation yet,
or runs without any history.csv to plot.

This module is the command line; the table's steps are in :mod:`utils.tracking.report_table`, the curves in
:mod:`utils.tracking.report_plot`, the cross-validations in :mod:`utils.tracking.report_cv`.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from config.paths import get_global_config
from utils.tracking.report_cv import (
    SUMMARY,
    SummaryPendingError,
    choose_cv_metric,
    figure_metrics,
    fold_runs,
    format_summary,
    plot_folds,
    read_summary,
    related_metrics,
    resolve_cv,
)
from utils.tracking.report_plot import MAX_PLOT_RUNS, plot_histories, resolve_runs
from utils.tracking.report_table import (
    ReportError,
    choose_metric,
    format_table,
    load_experiments,
    lower_is_better,
    newest_first,
    report_columns,
    select_runs,
    sort_best_first,
    split_values,
)


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
    parser.add_argument(
        "--cv",
        nargs="?",
        const="latest",
        default=None,
        metavar="NAME",
        help="a cross-validation's cv_summary.csv and fold runs instead (its name, the unique start of one, or "
        "'latest': the default); --metric keeps that metric's rows, --plot draws each fold's value",
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


def report_cv(args: argparse.Namespace, log_dir: Path) -> int:
    """``--cv``: the summary of a cross-validation (0), or its fold runs while folds are still to train (1).

    Raises:
        ReportError: no such cross-validation, an unknown metric, or an option that applies to runs only.
    """
    others = {"--session": args.session, "--routine": args.routine, "--status": args.status, "--last": args.last,
              "--all-columns": args.all_columns, "--ascending/--descending": args.ascending is not None,
              "--plot RUN": args.plot}  # fmt: skip
    if given := [name for name, value in others.items() if value]:
        verb = "does" if len(given) == 1 else "do"
        raise ReportError(f"--cv shows one cross-validation: {', '.join(given)} {verb} not apply")
    folder = resolve_cv(log_dir, args.cv)
    runs = fold_runs(folder)
    try:
        summary = read_summary(folder)
    except SummaryPendingError as err:  # the folds' progress, with the scores of those trained
        print(f"cross-validation {folder.name}: {len(runs)} folds in {folder}\n{format_table(runs)}")
        print(err, file=sys.stderr)
        return 1
    metric = choose_cv_metric(summary, args.metric)  # before any output: a wrong name is one line
    if args.metric is not None:
        summary = summary[summary["metric"].isin(related_metrics(summary, metric))]
    print(f"cross-validation {folder.name}: {len(runs)} folds in {folder}\n{format_summary(summary)}")
    if summary[["mean", "std", "out_of_fold"]].isna().to_numpy().any():
        print("nan: undefined (a fold or the whole set with nothing to count, see docs/data.md; skipped by the mean)")
    print(f"\nfold runs\n{format_table(runs[[c for c in runs.columns if not c.startswith('final_')]])}")
    if args.plot is not None:
        output = args.output or log_dir / "report.png"
        plot_folds(summary, figure_metrics(summary, metric), output)
        print(f"plot: {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 table, 1 no matching run, 2 error)."""
    args = build_parser().parse_args(argv)
    for name in ("session", "routine", "status"):
        setattr(args, name, split_values(getattr(args, name)))
    log_dir = get_global_config().LOG_DIR
    try:
        if args.cv is not None:
            return report_cv(args, log_dir)
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
        if "cv_name" in selected.columns and (cvs := selected["cv_name"].dropna().unique().tolist()):
            print(f"cross-validations: {', '.join(map(str, cvs))} (--cv NAME shows one's {SUMMARY})")
        if args.plot is not None:
            plotted = selected if args.plot else selected.head(MAX_PLOT_RUNS)
            print(f"plot: {plot_histories(plotted, log_dir, args.output or log_dir / 'report.png', metric)}")
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
