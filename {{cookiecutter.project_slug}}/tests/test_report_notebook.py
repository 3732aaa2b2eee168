"""What notebooks/explore_runs.ipynb asks of the report's modules: the histories of a table's runs, in its order,
and their figure without a file. The runs are test_report.py's (its fixture and names)."""

from pathlib import Path

import pytest
from test_report import RUNS, A, B, C, D, E, fixture_runs  # noqa: F401  # pylint: disable=unused-import  # a fixture

from utils.tracking import report_plot, report_table


def test_a_notebook_reads_the_histories_and_gets_the_figure_without_a_file(
    runs: Path, capsys: pytest.CaptureFixture
) -> None:
    """What notebooks/explore_runs.ipynb calls: read_histories in the table's order, plot_runs with no PNG."""
    table = report_table.sort_best_first(report_table.load_experiments(runs), "best_val_dice")
    histories = report_plot.read_histories(table, runs)
    assert list(histories) == [B, C, A, D]  # E has no history.csv: named in a note, left out
    assert capsys.readouterr().out == f"note: {E} has no history.csv (no epoch finished); left out of the plot\n"
    assert histories[B]["val_dice"].tolist() == RUNS[B]["dice"]
    before = sorted(runs.rglob("*"))
    figure = report_plot.plot_runs(histories, metric="best_val_dice")
    assert [line.get_label() for line in figure.get_axes()[1].lines] == [B, C, A, D]
    assert sorted(runs.rglob("*")) == before  # nothing written
    with pytest.raises(report_table.ReportError, match="none of these runs has a history.csv"):
        report_plot.read_histories(table[table["run_name"] == E], runs)
