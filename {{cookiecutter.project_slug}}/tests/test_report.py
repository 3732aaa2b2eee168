"""The report over experiments.csv: order, filters, columns, the overlay plot and every error message.

The CSVs are written by the project's own writers (upsert_experiment, append_history), with the columns a run
records, so the report is tested against the files it will really read.
"""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from config.paths import GlobalConfig
from utils.tracking import report, report_plot, report_table
from utils.tracking.csv_logs import append_history, flatten, upsert_experiment

# name -> how the run went. best_val_dice orders them B, C, A, D, E; best_val_loss (the loss at the best epoch,
# shifted per run so that the two orders differ) orders them D, C, A, B, E. E failed before its first epoch.
A = "20250101-120000_unet_pytorch"
B = "20250102-120000_unet_ignite"
C = "20250103-120000_wide_pytorch"
D = "20250104-120000_unet_fastai"
E = "20250105-120000_unet_pytorch"
RUNS = {
    A: {"dice": [0.5, 0.7], "loss_shift": 0.0},
    B: {"dice": [0.6, 0.9], "loss_shift": 0.5},
    C: {"dice": [0.4, 0.8], "loss_shift": 0.0, "base_channels": 32, "optimizer": "torch.optim.sgd.SGD"},
    D: {"dice": [0.2], "loss_shift": -0.75, "status": "interrupted"},
    E: {"dice": [], "loss_shift": 0.0, "status": "failed"},
}
BY_DICE = [B, C, A, D, E]
BY_LOSS = [D, C, A, B, E]
COMPACT = [
    "run_name",
    "routine",
    "status",
    "epochs_completed",
    "best_epoch",
    "best_val_loss",
    "best_val_dice",
    "best_val_iou",
    "duration_s",
]


def record_run(log_dir: Path, run_name: str, dice: list[float], loss_shift: float, **options: object) -> None:
    """Write a run's history.csv and experiments.csv row as RunRecorder does: same columns, same writers."""
    day, session, routine = run_name[6:8], *run_name.split("_")[1:]
    run_dir = log_dir / run_name
    rows = []
    for epoch, score in enumerate(dice, start=1):
        val = {"val_loss": 1 - score + loss_shift, "val_dice": score, "val_iou": score * 0.8}
        rows.append({"epoch": epoch, "train_loss": 1.2 - score, **val, "lr": 1e-3, "seconds": 0.5})
        run_dir.mkdir(parents=True, exist_ok=True)
        append_history(run_dir / "history.csv", rows[-1])
    best = max(rows, key=lambda row: row["val_dice"], default={})
    config = {
        "SESSION_NAME": session,
        "ROUTINE": routine,
        "SEED": 42,
        "MODEL": "models.unet.UNet",
        "MODEL_CONFIG": {"base_channels": options.get("base_channels", 16), "depth": 3},
        "OPTIMIZER": options.get("optimizer", "torch.optim.adamw.AdamW"),
        "OPTIMIZER_CONFIG": {"lr": 1e-3},
        "EPOCHS": 2,
        "METRICS": {"dice": "utils.metrics.dice", "iou": "utils.metrics.iou"},
    }
    row = {
        "run_name": run_name,
        "session_name": session,
        "routine": routine,
        "status": options.get("status", "completed"),
        "started_at": f"2025-01-{day}T12:00:00",
        "finished_at": f"2025-01-{day}T12:01:00",
        "duration_s": 60.0 + len(rows),
        "epochs_completed": len(rows),
        "best_epoch": best.get("epoch"),
        **{f"best_{key}": value for key, value in best.items() if key.startswith(("train_", "val_"))},
        **{f"final_{key}": value for key, value in (rows or [{}])[-1].items() if key.startswith(("train_", "val_"))},
        "git_commit": "0123abc",
        "git_dirty": False,
        "device": "cpu",
        "world_size": 1,
        "run_dir": str(run_dir),
        # Differs between runs but is not a hyper-parameter: the report must not offer it as one.
        "torch_version": f"2.13.{day}",
        **flatten(config),
    }
    upsert_experiment(log_dir / "experiments.csv", row)


@pytest.fixture(name="runs")
def fixture_runs(global_config: GlobalConfig) -> Path:
    """LOG_DIR holding the five runs of RUNS; returns LOG_DIR."""
    for name, run in RUNS.items():
        record_run(global_config.LOG_DIR, name, **run)
    return global_config.LOG_DIR


def report_lines(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[str], str]:
    """(exit status, stdout lines, stderr) of ``python -m utils.tracking.report ARGV``, run in this process."""
    status = report.main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def run_order(lines: list[str]) -> list[str]:
    """The run names of the table, top to bottom."""
    return [line.split()[0] for line in lines[2:] if line.split()[0] in RUNS]


def header(lines: list[str]) -> list[str]:
    """The column names of the table."""
    return lines[1].split()


@pytest.mark.slow
def test_cli_prints_every_run_best_dice_first(runs: Path, run_script: Callable) -> None:
    result = run_script("-m", "utils.tracking.report")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"5 of 5 runs in {runs / 'experiments.csv'}, best first by best_val_dice (highest first)"
    assert run_order(lines) == BY_DICE
    # Aligned: every column starts at the same character in the header and in each row.
    start = lines[1].index("best_val_dice")
    assert {line[start - 1] for line in lines[1:]} == {" "}
    assert lines[-1].split()[0] == E and "-" in lines[-1].split()  # no metric yet: shown as "-", sorted last


@pytest.mark.usefixtures("runs")
def test_losses_sort_lowest_first_and_the_order_can_be_forced(capsys: pytest.CaptureFixture) -> None:
    status, lines, _ = report_lines(capsys, "--metric", "val_loss")  # short for best_val_loss
    assert status == 0 and lines[0].endswith("best first by best_val_loss (lowest first)")
    assert run_order(lines) == BY_LOSS
    assert run_order(report_lines(capsys, "--metric", "best_val_loss", "--descending")[1]) == [B, A, C, D, E]
    assert run_order(report_lines(capsys, "--ascending")[1]) == [D, A, C, B, E]
    _, lines, _ = report_lines(capsys, "--metric", "final_train_loss")
    assert run_order(lines) == [B, C, A, D, E] and "final_train_loss" in header(lines)


def test_default_metric_without_dice_is_a_score_and_without_any_the_newest_run_comes_first(
    global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    path = global_config.LOG_DIR / "experiments.csv"
    upsert_experiment(path, {"run_name": "new", "started_at": "2025-01-02T00:00:00", "status": "running"})
    upsert_experiment(path, {"run_name": "old", "started_at": "2025-01-01T00:00:00", "status": "running"})
    status, lines, _ = report_lines(capsys)
    assert status == 0 and lines[0].endswith("newest first (no run has a best_val_* metric yet)")
    assert [line.split()[0] for line in lines[2:]] == ["new", "old"]
    upsert_experiment(path, {"run_name": "old", "best_val_loss": 0.1, "best_val_iou": 0.2})
    assert report.choose_metric(report.load_experiments(global_config.LOG_DIR)) == "best_val_iou"


@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--session", "unet"], [B, A, D, E]),
        (["--session", "w*"], [C]),  # shell patterns
        (["--routine", "pytorch,ignite"], [B, C, A, E]),  # comma lists
        (["--routine", "pytorch", "--routine", "fastai"], [C, A, D, E]),  # repeated
        (["--status", "completed"], [B, C, A]),
        (["--session", "unet", "--status", "completed,interrupted"], [B, A, D]),
        (["--last", "3"], [C, D, E]),  # the three most recent runs, then best first
        (["--routine", "pytorch", "--last", "2"], [C, E]),  # filters first, then the most recent of those
    ],
)
def test_filters(capsys: pytest.CaptureFixture, argv: list[str], expected: list[str]) -> None:
    status, lines, _ = report_lines(capsys, *argv)
    assert status == 0
    assert run_order(lines) == expected
    assert lines[0].startswith(f"{len(expected)} of 5 runs")


@pytest.mark.usefixtures("runs")
def test_filters_that_match_nothing_say_so_with_the_values_there_are(capsys: pytest.CaptureFixture) -> None:
    status, lines, err = report_lines(capsys, "--session", "unet", "--routine", "ignit")
    assert status == 1 and lines == []
    assert err.strip() == (
        "no run matches --session unet --routine ignit (sessions: unet, wide; "
        "routines: fastai, ignite, pytorch; statuses: completed, failed, interrupted)"
    )


@pytest.mark.usefixtures("runs")
def test_compact_columns_add_only_the_hyper_parameters_that_differ(capsys: pytest.CaptureFixture) -> None:
    _, lines, _ = report_lines(capsys)
    # base_channels and OPTIMIZER differ (run C); SEED, MODEL, lr... do not. torch_version differs but is no
    # hyper-parameter, and SESSION_NAME / ROUTINE repeat the run name and the routine column.
    assert header(lines) == [*COMPACT, "MODEL_CONFIG.base_channels", "OPTIMIZER"]
    row_c = next(line for line in lines if line.startswith(C)).split()
    assert row_c[-2:] == ["32", "SGD"]  # classes by their short name: torch.optim.sgd.SGD -> SGD
    assert next(line for line in lines if line.startswith(B)).split()[-1] == "AdamW"
    # Among the runs of one session nothing differs: no hyper-parameter columns at all.
    assert header(report_lines(capsys, "--session", "unet")[1]) == COMPACT


@pytest.mark.usefixtures("runs")
def test_more_differing_hyper_parameters_than_fit_are_named_below_the_table(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_table, "MAX_PARAMETER_COLUMNS", 1)
    _, lines, _ = report_lines(capsys)
    assert header(lines) == [*COMPACT, "MODEL_CONFIG.base_channels"]
    assert lines[-1] == "also differ: OPTIMIZER (--all-columns shows them)"


def test_all_columns_shows_every_column_as_written(runs: Path, capsys: pytest.CaptureFixture) -> None:
    _, lines, _ = report_lines(capsys, "--all-columns")
    assert header(lines) == list(pd.read_csv(runs / "experiments.csv").columns)
    assert "torch.optim.sgd.SGD" in next(line for line in lines if line.startswith(C)).split()


@pytest.mark.usefixtures("runs")
def test_plot_overlays_the_named_runs_in_one_png(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    output = tmp_path / "compare" / "runs.png"
    status, lines, _ = report_lines(capsys, "--plot", "latest", A, "20250103", "--output", str(output))
    assert status == 0 and lines[0].startswith("3 of 5 runs")
    assert run_order(lines) == [C, A, E]  # the table shows the plotted runs: latest (E), A, and C by its prefix
    assert lines[-2] == f"note: {E} has no history.csv (no epoch finished); left out of the plot"
    assert lines[-1] == f"plot: {output}"
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert image.size == (report_plot.FIGSIZE[0] * report_plot.DPI, report_plot.FIGSIZE[1] * report_plot.DPI)


@pytest.mark.usefixtures("runs")
def test_latest_is_the_newest_run_that_passes_the_filters(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    output = str(tmp_path / "latest.png")
    status, lines, _ = report_lines(capsys, "--routine", "ignite,fastai", "--plot", "latest", "--output", output)
    assert status == 0 and run_order(lines) == [D]
    status, _, err = report_lines(capsys, "--session", "wide", "--plot", A, "--output", output)
    assert status == 1 and err.startswith(f"no run matches --plot {A} --session wide (sessions: unet, wide; ")


def test_bare_plot_draws_the_runs_of_the_table_one_line_each(
    runs: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = []

    def keep_figure(*args: object, **kwargs: object) -> object:
        figures.append(plot_runs(*args, **kwargs))
        return figures[-1]

    plot_runs = report_plot.plot_runs
    monkeypatch.setattr(report_plot, "plot_runs", keep_figure)
    status, lines, _ = report_lines(capsys, "--session", "unet", "--status", "completed,interrupted", "--plot")
    assert status == 0 and lines[-1] == f"plot: {runs / 'report.png'}"
    assert (runs / "report.png").is_file()
    ax_loss, ax_score = figures[0].axes
    assert ax_score.get_title() == "val_dice"
    # One val_dice line per run, best first as in the table; two loss lines per run (val solid, train dashed).
    assert [line.get_label() for line in ax_score.lines] == [B, A, D]
    assert [line.get_ydata().tolist() for line in ax_score.lines] == [RUNS[run]["dice"] for run in (B, A, D)]
    assert [line.get_linestyle() for line in ax_loss.lines] == ["-", "--"] * 3


def test_no_experiments_yet(global_config: GlobalConfig, run_script: Callable) -> None:
    result = run_script("-m", "utils.tracking.report")
    assert result.returncode == 2
    assert result.stderr == f"error: no runs yet in {global_config.LOG_DIR}: train first\n"
    # An experiments.csv left empty (e.g. by a disk that filled up) reads the same.
    global_config.LOG_DIR.mkdir(parents=True)
    (global_config.LOG_DIR / "experiments.csv").touch()
    with pytest.raises(report.ReportError, match="^no runs yet in "):
        report.load_experiments(global_config.LOG_DIR)


@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--metric", "val_f1"],
            "unknown metric column 'val_f1'; available: best_train_loss, best_val_loss, best_val_dice, best_val_iou, "
            "final_train_loss, final_val_loss, final_val_dice, final_val_iou",
        ),
        (["--plot", "nope"], f"unknown run 'nope' for --plot (latest runs: {E}, {D}, {C}, {B}, {A})"),
        (["--plot", A, "2025"], "unknown run '2025' for --plot (it starts 5 run names)"),
        (["--plot", E], "none of these runs has a history.csv yet: nothing to plot"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    status, _, err = report_lines(capsys, *argv)
    assert status == 2
    assert err == f"error: {message}\n"


@pytest.mark.usefixtures("runs")
def test_last_must_be_positive(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--last", "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err
