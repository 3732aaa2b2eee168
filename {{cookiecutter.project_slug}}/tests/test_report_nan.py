"""The report and the curves with undefined metrics (NaN, written "nan" by the runs) and the pooled columns."""

import math
from pathlib import Path

import pandas as pd

from utils.tracking import report_plot, report_table
from utils.tracking.csv_logs import append_history, upsert_experiment

RUNS = {  # name -> (best_val_dice, best_val_dice_pooled, best_val_dice_e): e never occurs in the validation set
    "20250101-120000_unet_pytorch": (0.5, 0.45, math.nan),
    "20250102-120000_unet_pytorch": (math.nan, math.nan, math.nan),  # a run whose every epoch was undefined
    "20250103-120000_unet_pytorch": (0.7, 0.72, math.nan),
}


def write_runs(log_dir: Path) -> pd.DataFrame:
    """experiments.csv and history.csv as the runs write them (the project's own writers)."""
    for name, (score, pooled, never) in RUNS.items():
        row = {"run_name": name, "status": "completed", "started_at": name[:8], "best_val_loss": 0.3}
        row.update(best_val_dice=score, best_val_dice_e=never, best_val_dice_pooled=pooled)  # e first: see below
        upsert_experiment(log_dir / "experiments.csv", row)
        (log_dir / name).mkdir()
        for epoch, dice in ((1, math.nan), (2, score)):  # epoch 1 undefined
            history = {"epoch": epoch, "train_loss": 0.5, "val_loss": 0.4, "val_dice": dice, "val_dice_pooled": pooled}
            append_history(log_dir / name / "history.csv", {**history, "val_dice_e": never})
    return report_table.load_experiments(log_dir)


def test_undefined_values_sort_last_and_show_as_a_dash(tmp_path: Path) -> None:
    table = write_runs(tmp_path)
    assert table["best_val_dice_e"].isna().all()  # "nan" in the file is read as NaN
    assert report_table.choose_metric(table) == "best_val_dice"
    assert report_table.choose_metric(table.drop(columns="best_val_dice")) == "best_val_dice_pooled"  # not _e
    assert report_table.choose_metric(table, "dice_pooled") == "best_val_dice_pooled"
    ranked = report_table.sort_best_first(table, "best_val_dice_pooled")
    assert ranked["run_name"].str[:8].tolist() == ["20250103", "20250101", "20250102"]
    columns, _ = report_table.report_columns(ranked, "best_val_dice")
    assert {"best_val_dice", "best_val_dice_pooled"} <= set(columns)
    text = report_table.format_table(ranked[columns])
    assert text.splitlines()[-1].split()[-3:-1] == ["-", "-"]  # the undefined run: no number made up


def test_curves_with_undefined_epochs_draw(tmp_path: Path) -> None:
    table = write_runs(tmp_path)
    histories = report_plot.read_histories(table, tmp_path)
    figure = report_plot.plot_runs(histories, tmp_path / "report.png", "best_val_dice")
    ax_score = figure.get_axes()[1]
    assert ax_score.get_title() == "val_dice" and len(ax_score.lines) == 3 and (tmp_path / "report.png").is_file()
    assert math.isnan(ax_score.lines[0].get_ydata()[0])  # epoch 1 undefined: a gap, not a zero
