"""Scene prediction: predict.py's tiled throughput and peak memory on large scenes, against one whole-image pass.

Bakes the default project into a temporary folder and saves its default model, untrained (seeded: throughput and
memory do not depend on the weights), in a checkpoint with per-band normalisation statistics. For each scene size
(``--sizes``, default 1000x1000, 2500x2500 and 6000x4000) it writes a 16-bit grey PNG and runs ``predict.main``
in a child process per pass, so that each peak is its own: tiled (``--tile``, ``--overlap``, Gaussian blending)
and, where its activations fit (``--whole-limit``), one whole-image pass (``--tile 0``). Printed as a Markdown
table per pass:

- MP/s: megapixels per second of the prediction (read, normalise, infer, write the PNG), imports excluded;
- peak GB: the child's peak resident memory (``ru_maxrss``); above imports: the part of it added by predicting;
- scene GB: the scene's own arrays (the float32 image, the float32 logits and what MONAI stitches them with,
  the uint8 label map): tiled memory should grow with these, never with the network's activations.

A second table sets an ensemble of 3 checkpoints (``--weights A B C``, seeds 0, 1, 2) and test-time augmentation
(``--tta``: 8 views on square tiles) against one model on one scene (``--ensemble-size``, default 2500x2500, the
6-megapixel one), tiled: their time and the memory above imports as multiples of one model's. The members run one
after another on each batch of tiles, so an ensemble should cost about 3 times the time and about 1 times the memory.
A third table sets onnxruntime against torch on that scene (benchmarks/onnx_compare.py): predict.py with the
checkpoint and with its export by the project's export.py, megapixels per second and peak memory side by side, and
how far their probabilities and label maps differ. ``--only scenes|ensemble|onnx`` runs one table (``--only onnx``:
44 s). With the defaults the whole run takes 6 to 9 minutes on 2 CPU cores (measured, see docs/data.md).

Usage: ``python benchmarks/predict_scene.py --help`` for the options; ``--json FILE`` also writes the figures.
Never imports torchvision or fastai.vision.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# This script's folder is on sys.path
from onnx_compare import onnx_rows, print_onnx_table
from routine_overhead import cpu_model
from scene_pass import GB, run_pass, save_model, write_scene

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
TABLES = ("scenes", "ensemble", "onnx")
WHOLE_GB_PER_MP = 0.37  # activations of one whole-image pass of the default U-Net, measured (issue 12)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1000x1000,2500x2500,6000x4000", help="WxH scenes, comma-separated")
    parser.add_argument("--tile", type=int, default=512, help="tile side (default: 512, predict.py's)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap (default: 0.25, predict.py's)")
    parser.add_argument(
        "--base-channels", type=int, default=None, help="MODEL_CONFIG.base_channels (default: the config's)"
    )
    parser.add_argument("--depth", type=int, default=None, help="MODEL_CONFIG.depth (default: the config's)")
    parser.add_argument(
        "--whole-limit",
        type=float,
        default=4.0,
        help="GB of activations up to which a whole-image pass is run (default: 4)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: 0, torch's own choice)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps (default: cpu)")
    parser.add_argument(
        "--ensemble-size",
        default="2500x2500",
        help="WxH scene of the ensemble, TTA and ONNX tables (default: 2500x2500)",
    )
    parser.add_argument("--only", choices=TABLES, help="run one table (default: all three)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.sizes = [tuple(int(side) for side in size.lower().split("x")) for size in args.sizes.split(",")]
        args.ensemble_size = tuple(int(side) for side in args.ensemble_size.lower().split("x"))
    except ValueError:
        parser.error(f"--sizes and --ensemble-size take WxH values, got {args.sizes!r} and {args.ensemble_size!r}")
    if any(len(size) != 2 or min(size) < 1 for size in [*args.sizes, args.ensemble_size]) or args.tile < 0:
        parser.error("--sizes and --ensemble-size must be WxH with positive sides, --tile >= 0")
    return args


def scene_bytes(width: int, height: int, classes: int, tiled: bool) -> int:
    """The scene's own arrays: float32 image and logits, MONAI's float32 sum and count maps when tiled, uint8 labels."""
    pixels = width * height
    return pixels * (4 + 4 * classes + (4 * classes + 4 if tiled else 0) + 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tables = [args.only] if args.only else TABLES
    from cookiecutter.main import cookiecutter

    figures: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp_path = Path(tmp)
        project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(tmp_path), default_config=True))
        model_config = save_model(project, tmp_path / "model.pt", args)
        if "scenes" in tables:
            figures["rows"] = scene_rows(project, tmp_path / "model.pt", model_config, tmp_path, args)
        if "ensemble" in tables:
            members = [tmp_path / "model.pt"] + [tmp_path / f"model_{seed}.pt" for seed in (1, 2)]
            for seed, path in enumerate(members[1:], start=1):
                save_model(project, path, args, seed)
            figures["ensemble_rows"] = ensemble_rows(project, members, tmp_path, args)
        if "onnx" in tables:
            figures["onnx_rows"], figures["onnx_parity"] = onnx_rows(project, tmp_path / "model.pt", tmp_path, args)
    print(
        f"Scene prediction: U-Net base_channels {model_config['base_channels']}, depth {model_config['depth']}, "
        f"untrained; tiles of {args.tile} with overlap {args.overlap}, "
        f"Gaussian blending; device {args.device}, {os.cpu_count()} CPUs ({cpu_model()})."
    )
    if "rows" in figures:
        print_table(figures["rows"])
    width, height = args.ensemble_size
    if "ensemble_rows" in figures:
        print(
            f"Ensemble and TTA against one model: {width}x{height}, tiles of {args.tile}, as multiples of one model's."
        )
        print_ensemble_table(figures["ensemble_rows"])
    if "onnx_rows" in figures:
        print(f"onnxruntime against torch: {width}x{height}, tiles of {args.tile}, with --probabilities, ", end="")
        print("as multiples of torch's.")
        print_onnx_table(figures["onnx_rows"], figures["onnx_parity"])
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def scene_rows(
    project: Path, checkpoint: Path, model_config: dict[str, Any], tmp_path: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Each ``--sizes`` scene, tiled and (where its activations fit) whole: speed, peak memory, the scene's arrays."""
    rows = []
    for width, height in args.sizes:
        folder = tmp_path / f"scene_{width}x{height}"
        folder.mkdir()
        write_scene(folder / "scene.png", width, height)
        megapixels = width * height / 1e6
        passes = [args.tile] if args.tile else []
        if megapixels * WHOLE_GB_PER_MP * (model_config["base_channels"] / 16) <= args.whole_limit:
            passes.append(0)
        for tile in passes:
            figures = run_pass(project, [checkpoint], folder / "scene.png", folder / f"out_{tile}", tile, args)
            rows.append(
                {
                    "scene": f"{width}x{height}",
                    "pass": f"tiles of {tile}" if tile else "whole image",
                    "mp_per_s": megapixels / figures["seconds"],
                    "seconds": figures["seconds"],
                    "peak_gb": figures["peak"] / GB,
                    "above_imports_gb": (figures["peak"] - figures["baseline"]) / GB,
                    "scene_gb": scene_bytes(width, height, model_config["out_channels"], bool(tile)) / GB,
                }
            )
            print(f"{rows[-1]['scene']} {rows[-1]['pass']}: {figures['seconds']:.1f} s", file=sys.stderr)
    return rows


def ensemble_rows(project: Path, members: list[Path], tmp_path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One model, an ensemble of 3 and one model with TTA on the ``--ensemble-size`` scene, tiled; each pass's time
    and memory above imports, and both as multiples of one model's."""
    width, height = args.ensemble_size
    folder = tmp_path / f"ensemble_{width}x{height}"
    folder.mkdir()
    write_scene(folder / "scene.png", width, height)
    rows = []
    for name, weights, flags in (
        ("one model", members[:1], ()),
        ("ensemble of 3", members, ()),
        ("TTA", members[:1], ("--tta",)),
    ):
        output = folder / f"out_{name.replace(' ', '_')}"
        figures = run_pass(project, weights, folder / "scene.png", output, args.tile, args, flags)
        above = (figures["peak"] - figures["baseline"]) / GB
        rows.append(
            {"pass": name, "seconds": figures["seconds"], "peak_gb": figures["peak"] / GB, "above_imports_gb": above}
        )
        print(f"{width}x{height} {name}: {figures['seconds']:.1f} s", file=sys.stderr)
    for row in rows:
        row["time_x"] = row["seconds"] / rows[0]["seconds"]
        row["memory_x"] = row["above_imports_gb"] / max(rows[0]["above_imports_gb"], 1e-9)
    return rows


def print_ensemble_table(rows: list[dict[str, Any]]) -> None:
    header = ["pass", "s", "time x", "peak GB", "above imports GB", "memory x"]
    print()
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        cells = [row["seconds"], row["time_x"], row["peak_gb"], row["above_imports_gb"], row["memory_x"]]
        print("| " + " | ".join([row["pass"], *(f"{cell:.2f}" for cell in cells)]) + " |")
    print()


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ["scene", "pass", "MP/s", "s", "peak GB", "above imports GB", "scene GB"]
    lines = [header, ["---", "---"] + ["---:"] * (len(header) - 2)]
    for row in rows:
        lines.append(
            [
                row["scene"],
                row["pass"],
                f"{row['mp_per_s']:.3f}",
                f"{row['seconds']:.1f}",
                f"{row['peak_gb']:.2f}",
                f"{row['above_imports_gb']:.2f}",
                f"{row['scene_gb']:.2f}",
            ]
        )
    print()
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
