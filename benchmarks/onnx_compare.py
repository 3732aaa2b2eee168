"""The ONNX table of benchmarks/predict_scene.py: predict.py with a checkpoint (torch) against predict.py with its
export (onnxruntime), on one scene, on the same device.

The checkpoint goes through the project's own ``export.py`` (which checks the file against torch before keeping it),
then each path predicts the scene in a child process of its own (scene_pass.run_pass), tiled, with
``--probabilities``, so that each peak is its own and the ONNX process is seen to run without torch imported. The two
outputs are compared pixel by pixel: a speed bought with other answers would show there. ``--threads`` (it sets
OMP_NUM_THREADS) binds torch only: onnxruntime keeps its default, one thread per physical core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from scene_pass import GB, run_pass, write_scene


def export_onnx(project: Path, checkpoint: Path) -> Path:
    """``checkpoint`` exported by the project's export.py to the same name with .onnx; its check line to stderr."""
    path = checkpoint.with_suffix(".onnx")
    command = [sys.executable, "export.py", "--weights", str(checkpoint), "-o", str(path)]
    process = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"export.py exited {process.returncode}: {process.stderr[-2000:]}")
    print(process.stdout.strip().splitlines()[-1], file=sys.stderr)
    return path


def parity(torch_output: Path, onnx_output: Path) -> dict[str, Any]:
    """The largest |probability difference| and the count of differing label-map pixels between two outputs of
    ``predict.py --probabilities`` on ``scene.png``."""
    import numpy as np
    import tifffile
    from PIL import Image

    torch_probabilities, onnx_probabilities = (
        tifffile.imread(out / "scene_prob.tif") for out in (torch_output, onnx_output)
    )
    torch_mask, onnx_mask = (np.asarray(Image.open(out / "scene.png")) for out in (torch_output, onnx_output))
    return {
        "max_probability_difference": float(np.abs(torch_probabilities - onnx_probabilities).max()),
        "mask_pixels_differing": int((torch_mask != onnx_mask).sum()),
        "mask_pixels": int(torch_mask.size),
    }


def onnx_rows(
    project: Path, checkpoint: Path, tmp_path: Path, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Torch's pass and onnxruntime's on the ``--ensemble-size`` scene, tiled: megapixels per second, peak memory,
    both as multiples of torch's; and :func:`parity` of their outputs."""
    width, height = args.ensemble_size
    scene = tmp_path / f"onnx_{width}x{height}" / "scene.png"
    scene.parent.mkdir()
    write_scene(scene, width, height)
    onnx = export_onnx(project, checkpoint)
    rows, outputs = [], []
    for name, weights in (("torch (checkpoint)", checkpoint), ("onnxruntime (.onnx)", onnx)):
        outputs.append(scene.parent / f"out_{weights.suffix[1:]}")
        figures = run_pass(project, [weights], scene, outputs[-1], args.tile, args, ("--probabilities",))
        rows.append(
            {
                "pass": name,
                "mp_per_s": width * height / 1e6 / figures["seconds"],
                "seconds": figures["seconds"],
                "peak_gb": figures["peak"] / GB,
                "above_imports_gb": (figures["peak"] - figures["baseline"]) / GB,
                "torch_imported": figures["torch"],
            }
        )
        print(f"{width}x{height} {name}: {figures['seconds']:.1f} s", file=sys.stderr)
    for row in rows:
        row["speed_x"] = row["mp_per_s"] / rows[0]["mp_per_s"]
        row["peak_x"] = row["peak_gb"] / rows[0]["peak_gb"]
    return rows, parity(*outputs)


def print_onnx_table(rows: list[dict[str, Any]], same: dict[str, Any]) -> None:
    header = ["pass", "MP/s", "s", "peak GB", "above imports GB", "speed x", "peak x", "torch imported"]
    print()
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + " |")
    for row in rows:
        cells = [f"{row['mp_per_s']:.3f}", f"{row['seconds']:.1f}"]
        cells += [f"{row[key]:.2f}" for key in ("peak_gb", "above_imports_gb", "speed_x", "peak_x")]
        print("| " + " | ".join([row["pass"], *cells, "yes" if row["torch_imported"] else "no"]) + " |")
    print()
    print(
        f"onnxruntime against torch: max |probability difference| {same['max_probability_difference']:.1e}, "
        f"{same['mask_pixels_differing']} of {same['mask_pixels']} label-map pixels differ."
    )
