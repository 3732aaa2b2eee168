"""The report of a cross-validation (``python -m utils.tracking.report --cv``) on a real one (the session's
``shared_cv``: 3 folds of tiny runs): its summary's figures as cv_summary.csv has them, the headline (last.pt)
before best.pt (optimistic), the fold runs, undefined values, unfinished cross-validations and every error.

The cross-validation (three runs of two epochs on 20 images) costs about 3 s on a CPU, once per test process.
"""

import json
import math
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from utils.tracking import report, report_cv, report_table


@pytest.fixture(name="logs")
def fixture_logs(shared_cv: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shared cross-validation's LOG_DIR (a test may change its files), as LOG_DIR."""
    _, folders = shared_cv
    shutil.copytree(folders.LOG_DIR, tmp_path / "logs")
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    return tmp_path / "logs"


def _cv(logs: Path) -> tuple[str, Path, pd.DataFrame]:
    """(the cross-validation's name, its folder, its cv_summary.csv)."""
    folder = next(path.parent for path in logs.glob("*/cv.json"))
    return folder.name, folder, pd.read_csv(folder / "cv_summary.csv")


def _main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = report.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _rows(out: str, title: str) -> dict[str, list[str]]:
    """metric -> the cells of its line in the block whose title starts with ``title`` (``mean ± std`` is 3 cells)."""
    block = out.split(f"\n{title}", maxsplit=1)[1].split("\n\n", maxsplit=1)[0].splitlines()[2:]
    return {line.split()[0]: line.split()[1:] for line in block}


def _text(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def test_the_summary_is_printed_as_cv_summary_has_it_headline_first(logs: Path, capsys: pytest.CaptureFixture):
    name, folder, summary = _cv(logs)
    status, out, err = _main(capsys, "--cv")  # latest: the only one
    assert status == 0 and err == ""
    assert out.startswith(f"cross-validation {name}: 3 folds in {folder}\nlast.pt (the headline")
    assert out.index("\nlast.pt") < out.index("\nbest.pt (optimistic")
    for checkpoint, title in (("last.pt", "last.pt"), ("best.pt", "best.pt (optimistic")):
        printed = _rows(out, title)
        rows = summary[summary["checkpoint"] == checkpoint].set_index("metric")
        assert list(printed) == rows.index.tolist()
        for metric, row in rows.iterrows():
            folds = [row[f"fold_{fold}"] for fold in range(3)]
            assert printed[metric] == [_text(row["mean"]), "±", _text(row["std"]), f"{int(row['folds'])}/3",
                                       _text(row["out_of_fold"]), *map(_text, folds)]  # fmt: skip
    # The folds' values are each fold's last epoch on its own images, and the spread is theirs (ddof 1).
    state = json.loads((folder / "cv.json").read_text(encoding="utf-8"))
    finals = pd.read_csv(logs / "experiments.csv").set_index("run_name")["final_val_dice"]
    values = pd.Series([finals[state["runs"][str(fold)]] for fold in range(3)])
    last = summary[(summary["checkpoint"] == "last.pt") & (summary["metric"] == "val_dice")].iloc[0]
    assert [last[f"fold_{fold}"] for fold in range(3)] == pytest.approx(values.tolist(), abs=1e-5)
    assert (last["mean"], last["std"]) == pytest.approx((values.mean(), values.std()), abs=1e-5)
    # The fold runs, in fold order, as cv.json names them.
    lines = out.split("\nfold runs\n", maxsplit=1)[1].splitlines()
    assert lines[0].split()[:3] == ["fold", "run_name", "status"]
    assert [line.split()[:3] for line in lines[1:]] == [[str(f), state["runs"][str(f)], "completed"] for f in range(3)]
    assert "nan" not in out  # every value of these runs is defined
    assert "    3/3  " in out and lines[1].startswith("   0  ")  # numbers right-aligned under their header


def test_metric_keeps_its_rows_and_plot_draws_each_fold_beside_mean_and_out_of_fold(
    logs: Path, capsys: pytest.CaptureFixture
):
    name, _, summary = _cv(logs)
    status, out, _ = _main(capsys, "--cv", name[:-3], "--metric", "iou", "--plot", "--output", str(logs / "f.png"))
    assert status == 0 and list(_rows(out, "last.pt")) == ["val_iou", "val_iou_pooled"]
    assert out.rstrip().endswith(f"plot: {logs / 'f.png'}") and (logs / "f.png").is_file()

    figure = report_cv.plot_folds(summary, ["val_iou", "val_iou_pooled"])
    last = summary[summary["checkpoint"] == "last.pt"].set_index("metric")
    best = summary[summary["checkpoint"] == "best.pt"].set_index("metric")
    for axis, metric in zip(figure.get_axes(), ["val_iou", "val_iou_pooled"], strict=True):
        assert axis.get_title() == metric
        folds, optimistic, mean, oof = axis.lines
        folds_of = [f"fold_{fold}" for fold in range(3)]
        assert folds.get_ydata().tolist() == last.loc[metric, folds_of].tolist()
        assert optimistic.get_ydata().tolist() == best.loc[metric, folds_of].tolist()
        assert optimistic.get_label() == "best.pt (optimistic)" and optimistic.get_fillstyle() == "none"
        assert list(mean.get_ydata()) == [last.loc[metric, "mean"]] * 2 and mean.get_linestyle() == "-"
        assert list(oof.get_ydata()) == [last.loc[metric, "out_of_fold"]] * 2 and oof.get_linestyle() == "--"
        low, high = axis.patches[0].get_y(), axis.patches[0].get_y() + axis.patches[0].get_height()
        assert (low, high) == pytest.approx((last.loc[metric, "mean"] - last.loc[metric, "std"],
                                             last.loc[metric, "mean"] + last.loc[metric, "std"]))  # fmt: skip


def test_undefined_values_print_as_nan_and_are_not_drawn(logs: Path, capsys: pytest.CaptureFixture):
    _, folder, summary = _cv(logs)
    # As folds.py writes an undefined value: fold 1 had nothing to count, the mean and spread skip it; and a metric
    # undefined everywhere (a class that no image has).
    dice = (summary["checkpoint"] == "last.pt") & (summary["metric"] == "val_dice")
    summary.loc[dice, ["fold_1", "std", "folds"]] = [math.nan, math.nan, 1]
    summary.loc[summary["metric"] == "val_iou", ["mean", "std", "out_of_fold", "fold_0", "fold_1", "fold_2"]] = math.nan
    summary.to_csv(folder / "cv_summary.csv", index=False, float_format="%.6g", na_rep="nan")

    status, out, _ = _main(capsys, "--cv")
    assert status == 0
    cells = _rows(out, "last.pt")
    assert cells["val_dice"][1:4] == ["±", "nan", "1/3"] and cells["val_dice"][6] == "nan"
    assert cells["val_iou"] == ["nan", "±", "nan", "3/3", "nan", "nan", "nan", "nan"]
    assert "\nnan: undefined" in out

    table = report_cv.headline(report_cv.read_summary(folder))
    assert math.isnan(table.loc["val_dice", "fold_1"]) and table.loc["val_dice", "folds"] == 1
    figure = report_cv.plot_folds(report_cv.read_summary(folder), ["val_dice", "val_iou"])
    dice_axis, iou_axis = figure.axes
    assert math.isnan(dice_axis.lines[0].get_ydata()[1])  # a gap, not a zero
    assert [tick.get_text() for tick in dice_axis.get_xticklabels()] == ["fold_0", "fold_1\n(undefined)", "fold_2"]
    assert len(dice_axis.lines) == 4 and not dice_axis.patches  # the mean and out-of-fold lines, no spread band
    assert len(iou_axis.lines) == 2  # the folds only: no mean, no out-of-fold value to draw


def test_an_unfinished_cross_validation_shows_its_folds_and_exits_1(logs: Path, capsys: pytest.CaptureFixture):
    name, folder, _ = _cv(logs)
    (folder / "cv_summary.csv").unlink()
    (folder / "fold_2.json").unlink()  # fold 2 trained but not scored yet
    state = json.loads((folder / "cv.json").read_text(encoding="utf-8"))
    del state["runs"]["1"]  # and fold 1 not started
    (folder / "fold_1.json").unlink()
    (folder / "cv.json").write_text(json.dumps(state), encoding="utf-8")
    status, out, err = _main(capsys, "--cv")
    assert status == 1
    assert [line.split()[:3] for line in out.splitlines()[2:]] == [
        ["0", state["runs"]["0"], "completed"], ["1", "-", "not"], ["2", state["runs"]["2"], "completed"],
    ]  # fmt: skip
    assert "final_val_dice" in out.splitlines()[1]  # the scores of the folds trained so far
    assert err == f"cross-validation {name} has no cv_summary.csv yet: fold(s) 1, 2 of 3 still to train or score " \
        f"(python train.py --folds 3 --resume {name} with its config)\n"  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cv", "nope"], "error: unknown cross-validation 'nope' (cross-validations: {name})"),
        (
            ["--cv", "unet", "--metric", "recall"],
            "error: unknown metric 'recall' of the cross-validation; available: "
            "val_dice, val_dice_pooled, val_iou, val_iou_pooled",
        ),  # fmt: skip
        (
            ["--cv", "--session", "x", "--last", "2"],
            "error: --cv shows one cross-validation: --session, --last do not apply",
        ),  # fmt: skip
        (["--cv", "--plot", "2026"], "error: --cv shows one cross-validation: --plot RUN does not apply"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(logs: Path, capsys: pytest.CaptureFixture, argv: list, message: str):
    name, _, _ = _cv(logs)
    assert _main(capsys, *argv) == (2, "", message.format(name=name) + "\n")


def test_no_cross_validation_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture):
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    assert report_cv.cross_validations(tmp_path).empty  # what the notebook asks before it shows one
    expected = f"error: no cross-validation in {tmp_path} yet: python train.py --folds K makes one\n"
    assert _main(capsys, "--cv") == (2, "", expected)


def test_latest_is_the_one_whose_fold_started_last(logs: Path, shared_cv: tuple):
    name, folder, _ = _cv(logs)
    copy = logs / "other_cv3_00000000"  # no run in experiments.csv: cv.json's time says when
    shutil.copytree(folder, copy)
    state = json.loads((copy / "cv.json").read_text(encoding="utf-8"))
    (copy / "cv.json").write_text(json.dumps({**state, "cv_name": copy.name}), encoding="utf-8")
    later = time.time() + 60  # a minute after the folds started (written now could fall in their last second)
    os.utime(copy / "cv.json", (later, later))
    table = report_cv.cross_validations(logs)
    assert table["cv_name"].tolist() == [copy.name, name]  # written after the folds started
    assert table.iloc[1][["folds", "runs", "summary"]].tolist() == [3, 3, True]
    os.utime(copy / "cv.json", (86400 * 365, 86400 * 365))  # 1971
    os.utime(folder / "cv.json", (0, 0))  # 1970, but its fold runs started today
    assert report_cv.resolve_cv(logs, "latest") == folder
    assert report_cv.resolve_cv(logs, "other") == copy
    assert shared_cv[0].run_dir == shared_cv[1].LOG_DIR / name  # the copy is of the real one


def test_the_runs_table_names_each_fold_run_s_cross_validation(logs: Path, capsys: pytest.CaptureFixture):
    name, _, _ = _cv(logs)
    status, out, _ = _main(capsys, "--metric", "final_val_dice")
    header, *lines = out.splitlines()[1:5]
    assert status == 0 and header.split()[:5] == ["run_name", "routine", "status", "cv_name", "fold"]
    assert sorted(line.split()[3:5][1] for line in lines) == ["0", "1", "2"]
    assert {line.split()[3] for line in lines} == {name} and "FOLD" not in header.split()
    assert out.splitlines()[-1] == f"cross-validations: {name} (--cv NAME shows one's cv_summary.csv)"
    table = report_table.load_experiments(logs)
    table["cv_name"], table["fold"] = math.nan, math.nan  # ordinary runs: no cross-validation columns
    assert "cv_name" not in report_table.report_columns(table, "best_val_dice")[0]


def test_fold_columns_sort_by_number(shared_cv: tuple) -> None:
    _, folders = shared_cv
    summary = report_cv.read_summary(next(folders.LOG_DIR.glob("*/cv.json")).parent)
    wide = summary.rename(columns={f"fold_{i}": f"fold_{i * 5}" for i in range(3)})  # fold_0, fold_5, fold_10
    assert report_cv.fold_names(wide) == ["fold_0", "fold_5", "fold_10"]


def test_the_notebook_s_table_is_the_headline_with_best_pt_beside(shared_cv: tuple) -> None:
    _, folders = shared_cv
    summary = report_cv.read_summary(next(folders.LOG_DIR.glob("*/cv.json")).parent)
    optimistic = summary["checkpoint"] == "best.pt"  # the tiny runs' best epoch is their last: make them differ
    summary.loc[optimistic, ["mean", "out_of_fold"]] = summary.loc[optimistic, ["mean", "out_of_fold"]] + 1
    table = report_cv.headline(summary)
    columns = ["mean", "std", "folds", "out_of_fold", "fold_0", "fold_1", "fold_2"]
    assert table.columns.tolist() == [*columns, "optimistic_mean", "optimistic_out_of_fold"]
    for checkpoint, names in (("last.pt", columns), ("best.pt", ["optimistic_mean", "optimistic_out_of_fold"])):
        rows = summary[summary["checkpoint"] == checkpoint].set_index("metric")
        expected = rows[columns if checkpoint == "last.pt" else ["mean", "out_of_fold"]].to_numpy()
        assert (table[names].to_numpy() == expected).all()
    assert report_cv.figure_metrics(summary) == ["val_dice", "val_dice_pooled"]
    assert report_cv.figure_metrics(summary, "iou") == ["val_iou", "val_iou_pooled"]
