"""The scene-prediction benchmark runs (tiny scenes and model) and prints a row with numeric figures for each pass."""

import json
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The Markdown table of the output: (scene, pass) -> its cells."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in stdout.split("\n\n| scene", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[(cells[0], cells[1])] = cells
    return rows


def check_onnx_table(stdout: str, figures: dict) -> None:
    """The ONNX table: torch's row then onnxruntime's, numeric, onnxruntime's without torch imported, and outputs
    that agree (the export's own check holds logits within 1e-4; a sigmoid only shrinks that)."""
    table = stdout.split("\n\n| pass | MP/s", 1)[1].splitlines()[2:4]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    assert [row[0] for row in cells] == ["torch (checkpoint)", "onnxruntime (.onnx)"], stdout
    assert all(re.match(r"^\d+\.\d+$", cell) for row in cells for cell in row[1:7]), cells
    assert float(cells[0][1]) > 0 and float(cells[1][1]) > 0 and cells[0][5:7] == ["1.00", "1.00"], cells
    assert [row[7] for row in cells] == ["yes", "no"], cells  # else onnxruntime's peak would carry torch's
    same = figures["onnx_parity"]
    assert same["mask_pixels"] == 96 * 64 and same["mask_pixels_differing"] <= 96 * 64 // 100, same
    assert 0 <= same["max_probability_difference"] < 1e-4, same
    line = f"{same['mask_pixels_differing']} of {same['mask_pixels']} label-map pixels differ."
    assert line in stdout, stdout
    assert [row["pass"] for row in figures["onnx_rows"]] == ["torch (checkpoint)", "onnxruntime (.onnx)"]


def test_scene_prediction_benchmark_smoke(tmp_path: Path):
    result = tmp_path / "bench.json"
    args = ["--sizes", "100x60,40x24", "--tile", "32", "--base-channels", "4", "--depth", "2", "--json", str(result)]
    args += ["--ensemble-size", "96x64"]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "predict_scene.py"), *args],
        cwd=tmp_path,
        timeout=300,
        env=clean_env(),
    )
    rows = table_rows(proc.stdout)
    passes = {"tiles of 32", "whole image"}
    assert set(rows) == {(scene, name) for scene in ("100x60", "40x24") for name in passes}, proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| scene"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["scene", "pass", "MP/s", "s", "peak GB", "above imports GB", "scene GB"], header
    for cells in rows.values():
        assert all(re.match(r"^\d+\.\d+$", cell) for cell in cells[2:]), cells
        assert float(cells[2]) > 0 and float(cells[4]) > 0.05, cells  # a process with torch takes more than 50 MB
    figures = json.loads(result.read_text())
    assert len(figures["rows"]) == 4 and all(row["peak_gb"] >= row["above_imports_gb"] for row in figures["rows"])
    assert figures["settings"]["sizes"] == [[100, 60], [40, 24]]
    assert not list(TEMPLATE_DIR.glob("benchmarks/**/out_*")), "the benchmark wrote into the template"
    # The second table: one model, an ensemble of 3 and TTA, time and memory as multiples of one model's
    table = proc.stdout.split("\n\n| pass", 1)[1].splitlines()[2:5]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    assert [row[0] for row in cells] == ["one model", "ensemble of 3", "TTA"], proc.stdout
    assert all(re.match(r"^\d+\.\d+$", cell) for row in cells for cell in row[1:]), cells
    assert cells[0][2] == "1.00" and [row["pass"] for row in figures["ensemble_rows"]] == [
        "one model",
        "ensemble of 3",
        "TTA",
    ]
    check_onnx_table(proc.stdout, figures)


def test_scene_prediction_benchmark_only_onnx(tmp_path: Path):
    """--only onnx runs the ONNX table alone: no scene or ensemble table, no figures of theirs."""
    result = tmp_path / "bench.json"
    args = ["--only", "onnx", "--tile", "32", "--base-channels", "4", "--depth", "2", "--ensemble-size", "96x64"]
    proc = run(
        [sys.executable, str(TEMPLATE_DIR / "benchmarks" / "predict_scene.py"), *args, "--json", str(result)],
        cwd=tmp_path,
        timeout=300,
        env=clean_env(),
    )
    figures = json.loads(result.read_text())
    assert "| scene" not in proc.stdout and "| pass | s |" not in proc.stdout, proc.stdout
    assert set(figures) == {"settings", "onnx_rows", "onnx_parity"}, figures
    check_onnx_table(proc.stdout, figures)
