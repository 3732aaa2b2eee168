"""The thin-class benchmark runs (tiny settings): a boundary class of a few percent, the report's class weights
applied to the second run, a row of boundary dice per epoch for each run."""

import json
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run


def test_thin_class_benchmark_smoke(tmp_path: Path):
    result = tmp_path / "bench.json"
    args = ["--tiles", "10", "--size", "32", "--epochs", "2", "--json", str(result)]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "thin_class.py"), *args],
        cwd=tmp_path,
        timeout=400,
        env=clean_env(),
    )
    figures = json.loads(result.read_text())
    assert 0.01 < figures["boundary_share"] < 0.08, figures  # a thin class, as in real nuclei tiles
    assert any(line.startswith("LOSS_CONFIG.class_weights=") for line in figures["suggested"]), figures
    assert not any(line.startswith("DATA_LOADER_CONFIG.batch_size") for line in figures["suggested"]), figures
    assert [len(curve) for curve in figures["curves"].values()] == [2, 2], figures
    rows = re.findall(r"^\| (\d) \| (\d\.\d{3}) \| (\d\.\d{3}) \|$", proc.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["1", "2"], proc.stdout
    assert all(0.0 <= float(dice) <= 1.0 for row in rows for dice in row[1:]), rows
    assert re.search(r"first epoch with boundary dice >= 0\.01: without (\d|None), with (\d|None)", proc.stdout)
    assert not list(TEMPLATE_DIR.glob("benchmarks/**/logs")), "the benchmark wrote into the template"
