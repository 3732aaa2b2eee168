"""A thin class: how soon a rare boundary class leaves dice 0, with and without data_report.py's suggested lines.

Bakes the default project into a temporary folder and writes nuclei-like tiles: grey PNG images with a few noisy
bright ellipses, and masks of three classes, 0 background, 1 interior, 2 boundary (the ellipse's rim, 1 px; about
3 % of the pixels at the default sizes). Then ``data_report.py`` is run on the folder, and the project's default
U-Net is trained with ``train.py`` twice on the same data and seed: without a remedy (the config's own lines), and
with the report's suggested lines (all but the batch size, which stays the same for both). Printed as a Markdown
table: the boundary's validation dice per epoch for each run, and the first epoch where it leaves 0.

Usage: ``python benchmarks/thin_class.py --help`` for the options; ``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from data_loading import bake  # this script's folder is on sys.path

CLASSES = ["background", "interior", "boundary"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tiles", type=int, default=240, help="tiles in the folder, 20%% validation (default: 240)")
    parser.add_argument("--size", type=int, default=64, help="tile height and width (default: 64)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (default: 6)")
    parser.add_argument("--seed", type=int, default=42, help="the runs' SEED (default: 42)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run (default: 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.tiles < 5 or args.size < 16 or args.epochs < 1:
        parser.error("need --tiles >= 5, --size >= 16, --epochs >= 1")
    return args


def write_tiles(root: Path, count: int, size: int, seed: int = 0) -> float:
    """``count`` nuclei-like tiles in ``root/images`` and ``root/masks``; returns the boundary's share of pixels.

    Each tile holds 3-6 ellipses (semi-axes size/16 to size/8, any angle), drawn in turn (a later one covers an
    earlier one); a pixel of an ellipse whose 4-neighbour lies outside it is boundary. Intensity: 0.25 background,
    0.6 nuclei (each its own +-0.1), Gaussian noise 0.12, stored as 8-bit.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    boundary = 0
    for index in range(count):
        mask = np.zeros((size, size), dtype=np.uint8)
        image = np.full((size, size), 0.25)
        for _ in range(rng.integers(3, 7)):
            y, x = rng.uniform(0, size, 2)
            a, b = rng.uniform(size / 16, size / 8, 2)
            angle = rng.uniform(0, np.pi)
            u = (cols - x) * np.cos(angle) + (rows - y) * np.sin(angle)
            v = (rows - y) * np.cos(angle) - (cols - x) * np.sin(angle)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            padded = np.pad(inside, 1)
            interior = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
            mask[inside] = 2
            mask[interior] = 1
            image[inside] = 0.6 + rng.uniform(-0.1, 0.1)
        image += rng.normal(0, 0.12, image.shape)
        boundary += int((mask == 2).sum())
        name = f"tile_{index:04d}.png"
        Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)
    return boundary / (count * size * size)


def base_settings(folder: Path, args: argparse.Namespace) -> list[str]:
    """The --set options of both runs: the folder, three classes, the epochs and the seed."""
    return [
        "DATASET=utils.data.folder.SegmentationFolder",
        f"DATASET_CONFIG={{'root': {str(folder)!r}}}",
        "TASK=multiclass",
        f"CLASSES={CLASSES!r}",
        "MODEL_CONFIG.out_channels=3",
        f"EPOCHS={args.epochs}",
        f"SEED={args.seed}",
        "EARLY_STOPPING=None",
    ]


def command(project: Path, script: str, settings: list[str]) -> list[str]:
    return [sys.executable, str(project / script), *(arg for setting in settings for arg in ("--set", setting))]


def suggested_lines(project: Path, settings: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    """data_report.py's output on the folder, and its suggested settings but the batch size."""
    proc = subprocess.run(
        command(project, "data_report.py", settings), cwd=project, env=env, capture_output=True, text=True, check=True
    )
    lines = [re.match(r"\s*--set (.+?)\s+# ", line) for line in proc.stdout.splitlines()]
    found = [shlex.split(match.group(1))[0] for match in lines if match]
    return proc.stdout, [line for line in found if not line.startswith("DATA_LOADER_CONFIG.batch_size")]


def train(project: Path, name: str, settings: list[str], env: dict[str, str]) -> list[float]:
    """Train one run named ``name``; the boundary's validation dice per epoch, from its history.csv."""
    proc = subprocess.run(
        command(project, "train.py", [f"SESSION_NAME={name!r}", *settings]),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"train.py exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    (history,) = Path(env["LOG_DIR"]).glob(f"*_{name}_*/history.csv")  # <time>_<SESSION_NAME>_<routine>
    with history.open() as rows:
        return [float(row["val_dice_boundary"]) for row in csv.DictReader(rows)]


def first_above_zero(curve: list[float]) -> int | None:
    """The first epoch (1-based) whose dice is at least 0.01 (above 0 at two decimals), or None."""
    return next((epoch for epoch, dice in enumerate(curve, 1) if dice >= 0.01), None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="thin-class-") as tmp:
        project = bake(Path(tmp))
        folder = Path(tmp) / "tiles"
        share = write_tiles(folder, args.tiles, args.size)
        env = {**os.environ, "LOG_DIR": f"{tmp}/logs", "WEIGHT_DIR": f"{tmp}/weights"}
        env["OMP_NUM_THREADS"] = str(args.threads)
        settings = base_settings(folder, args)
        report, suggested = suggested_lines(project, settings, env)
        print(f"{args.tiles} tiles of {args.size}x{args.size}, boundary {100 * share:.1f} % of pixels\n{report}")
        curves = {
            "without": train(project, "without", settings, env),
            "with": train(project, "with", [*settings, *suggested], env),
        }
    print(f"suggested settings applied: {' '.join(shlex.quote(s) for s in suggested)}\n")
    print("| epoch | boundary dice without | boundary dice with the suggested lines |\n| ---: | ---: | ---: |")
    for epoch, (without, with_) in enumerate(zip(curves["without"], curves["with"], strict=True), 1):
        print(f"| {epoch} | {without:.3f} | {with_:.3f} |")
    firsts = {name: first_above_zero(curve) for name, curve in curves.items()}
    print(f"\nfirst epoch with boundary dice >= 0.01: without {firsts['without']}, with {firsts['with']}")
    if args.json is not None:
        figures = {"boundary_share": share, "suggested": suggested, "curves": curves, "first_above_zero": firsts}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
