"""The cross-validation benchmark runs (two folds of tiny runs) and prints its table with a figure in every cell."""

import json
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run


def test_cross_validation_benchmark_smoke(tmp_path: Path):
    result = tmp_path / "bench.json"
    args = ["--folds", "2", "--samples", "12", "--test-samples", "4", "--size", "32", "--epochs", "1"]
    args += ["--base-channels", "4", "--json", str(result)]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "cv_ensemble.py"), *args],
        cwd=tmp_path,
        timeout=600,
        env=clean_env(),
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    lines = [line for line in rows if not line.startswith(("| model", "| ---"))]  # the header and its rule
    labels = [line.split("|")[1].strip() for line in lines]
    assert labels == [
        "one model (a fold's last.pt)",
        "2-fold ensemble",
        "one model (a fold's last.pt) + TTA",
        "2-fold ensemble + TTA",
        "out-of-fold estimate (last.pt)",
        "out-of-fold, best.pt (optimistic)",
    ], proc.stdout
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")[1:]]
        assert len(cells) == 5 and all(re.match(r"^(\d\.\d{4}|nan)( ± \d\.\d{4})?$", cell) for cell in cells), line
    assert " ± " in lines[0]  # one model: the mean of the folds' models, with their spread
    figures = json.loads(result.read_text())
    assert figures["train_s"] > 0 and set(figures["rows"]) == set(labels)
