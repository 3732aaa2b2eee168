"""The routine-overhead benchmark runs (tiny settings) and prints a row with numeric ratios for each routine."""

import importlib.util
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run

# A routine's framework; a routine whose framework is not installed here is reported as skipped, not timed.
FRAMEWORKS = {"pytorch": "torch", "ignite": "ignite", "fastai": "fastai"}
ROUTINES = sorted(
    path.stem.removesuffix("_training")
    for path in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "training").glob("*_training.py")
)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The first Markdown table of the output: routine -> its cells."""
    rows: dict[str, list[str]] = {}
    for line in stdout.split("\n\n| routine", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_benchmark_smoke(tmp_path: Path):
    result = tmp_path / "bench.json"
    args = ["--rounds", "1", "--epochs", "2", "--samples", "32", "--size", "32", "--json", str(result)]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "routine_overhead.py"), *args],
        cwd=tmp_path,
        timeout=240,
        env=clean_env(),
    )
    rows = table_rows(proc.stdout)
    installed = [name for name in ROUTINES if importlib.util.find_spec(FRAMEWORKS.get(name, name)) is not None]
    assert set(rows) == {"bare", *installed}, proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| routine"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:4] == ["routine", "s/step", "step ratio", "spread"], header
    number = re.compile(r"^\d+\.\d+$")
    for name, cells in rows.items():
        # time per training step, its ratio to the bare loop and the spread; then the same for whole runs
        for per_run, ratio, spread in ((cells[1], cells[2], cells[3]), (cells[6], cells[7], cells[8])):
            assert number.match(per_run) and float(per_run) > 0, cells
            assert number.match(ratio) and float(ratio) > 0, cells
            assert re.match(r"^\d+\.\d+-\d+\.\d+$", spread), cells
            if name == "bare":
                assert ratio == "1.00", cells
    for name in set(ROUTINES) - set(installed):
        assert f"{name}: skipped" in proc.stdout
    assert re.search(r"bare loop: \d+% of its training time blocked in next\(iter\(loader\)\)", proc.stdout)
    assert result.is_file()
    assert not list(TEMPLATE_DIR.glob("benchmarks/**/logs")), "the benchmark wrote into the template"
