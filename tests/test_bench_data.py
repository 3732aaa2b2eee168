"""The data-loading benchmark runs (tiny settings) and prints a row with a numeric data share for each num_workers."""

import json
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The Markdown table of the output: num_workers -> its cells."""
    rows: dict[str, list[str]] = {}
    for line in stdout.split("\n\n| num_workers", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_data_loading_benchmark_smoke(tmp_path: Path):
    result = tmp_path / "bench.json"
    args = ["--tiles", "20", "--size", "48", "--batch-size", "4", "--epochs", "1", "--json", str(result)]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "data_loading.py"), *args],
        cwd=tmp_path,
        timeout=240,
        env=clean_env(),
    )
    rows = table_rows(proc.stdout)
    assert set(rows) == {"0", "2"}, proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| num_workers"))
    assert [cell.strip() for cell in header.strip("|").split("|")][:2] == ["num_workers", "data share"], header
    for cells in rows.values():
        assert re.match(r"^\d\.\d{3}$", cells[1]) and 0.0 <= float(cells[1]) <= 1.0, cells
        low, high = (float(value) for value in cells[2].split("-"))
        assert 0.0 <= low <= high <= 1.0, cells
        assert int(cells[4]) == 4, cells  # 16 training tiles (80% of 20) in batches of 4
    figures = json.loads(result.read_text())
    assert [row["num_workers"] for row in figures["rows"]] == [0, 2]
    assert all(0.0 <= row["data_share"] <= 1.0 for row in figures["rows"])
    assert re.search(r"lowest data share: \d+\.\d% with num_workers=\d", proc.stdout)
    assert not list(TEMPLATE_DIR.glob("benchmarks/**/logs")), "the benchmark wrote into the template"
