"""Data loading: the share of a training epoch spent waiting for data, on a folder of PNG tiles.

Bakes the default project into a temporary folder, writes ``--tiles`` RGB PNG tiles (``--size`` x ``--size``) with
their 0/255 masks, and trains the project's model on them with the project's loader: ``training.data``'s
``build_datasets`` and ``build_loaders`` (SegmentationFolder -> SegmentationSamples: mask encoding, per-band
normalisation, TRAIN_TRANSFORM -> batches padded by pad_collate to the model's divisor), the config's loader settings
but ``num_workers``, pinned memory on CUDA as in a run. For each ``num_workers`` (``--workers``, default 0 and 2),
after one unmeasured warm-up epoch, ``--epochs`` epochs are timed: the data wait is the time blocked in
``next(iterator)`` (worker start-up included: the project's workers are not persistent), the step the rest
(forward, backward, optimizer step, ``loss.item()``, a sync point on a GPU). Printed as a Markdown table:

- data share: data wait / epoch time (the issue's goal: under 10% with workers);
- s/epoch, steps, ms/step and the data wait per step.

Usage: ``python benchmarks/data_loading.py --help`` for the options; ``--json FILE`` also writes the figures.
Never imports torchvision or fastai.vision.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from routine_overhead import cpu_model  # this script's folder is on sys.path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument(
        "--tiles", type=int, default=160, help="PNG tiles in the folder, 20%% validation (default: 160)"
    )
    parser.add_argument("--size", type=int, default=256, help="tile height and width (default: 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16, the project's)")
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs per setting (default: 2)")
    parser.add_argument("--workers", default="0,2", help="num_workers settings, comma-separated (default: 0,2)")
    parser.add_argument("--patch", type=int, default=None, help="PATCH_SIZE (default: None, whole tiles)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: 0, torch's own choice)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps | auto (default: cpu)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers takes integers separated by commas, got {args.workers!r}")
    if args.tiles < 5 or args.size < 16 or args.epochs < 1 or min(args.workers) < 0:
        parser.error("need --tiles >= 5, --size >= 16, --epochs >= 1, --workers >= 0")
    return args


def bake(output_dir: Path) -> Path:
    """The default project baked into ``output_dir``; its root goes first on sys.path."""
    from cookiecutter.main import cookiecutter

    # default_config: a user's ~/.cookiecutterrc must not change the project that is measured
    project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(output_dir), default_config=True))
    sys.path.insert(0, str(project))
    return project


def write_tiles(root: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` RGB PNG tiles with noise and bright discs, and their 0/255 masks: ``root/images``, ``root/masks``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:size, :size]
    for index in range(count):
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 6)):
            y, x, radius = rng.integers(0, size), rng.integers(0, size), rng.integers(size // 16, size // 4)
            mask |= (rows - y) ** 2 + (cols - x) ** 2 < radius**2
        image = rng.normal(90, 25, (size, size, 3)) + 80 * mask[..., None] * np.array([1.0, 0.6, 0.3])
        name = f"tile_{index:04d}.png"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / name)
    return root


def bench_config(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The project's TRAIN_CONFIG on the tile folder (3 bands), scaled by the options, validated."""
    from config.schema import validate_config
    from config.train_config import TRAIN_CONFIG
    from utils.data.folder import SegmentationFolder

    config = copy.deepcopy(TRAIN_CONFIG)
    config["DATASET"], config["DATASET_CONFIG"] = SegmentationFolder, {"root": str(folder), "channels": 3}
    config["MODEL_CONFIG"] = {**config["MODEL_CONFIG"], "in_channels": 3}
    config["DATA_LOADER_CONFIG"] = {**config["DATA_LOADER_CONFIG"], "batch_size": args.batch_size}
    config["PATCH_SIZE"] = args.patch
    config["DEVICE"] = args.device
    return validate_config(config)


def build(config: dict[str, Any], device: Any) -> tuple[Any, Any, Any, Any]:
    """Model, optimizer, loss and the training-set dataset as a run builds them."""
    from training.build import build_loss, build_model, build_optimizer
    from training.data import build_datasets

    model = build_model(config, device)
    train_set, _, _ = build_datasets(config)
    return model, build_optimizer(config, model), build_loss(config), train_set


def epoch(model: Any, optimizer: Any, loss_fn: Any, loader: Any, device: Any) -> tuple[float, float, int]:
    """One training epoch: (wall seconds, seconds blocked in next(iterator), steps)."""
    start, wait, steps = time.perf_counter(), 0.0, 0
    batches = iter(loader)  # workers start on the first next(): counted as waiting, as in a run
    while True:
        fetch = time.perf_counter()
        try:
            images, targets = next(batches)
        except StopIteration:
            wait += time.perf_counter() - fetch
            break
        wait += time.perf_counter() - fetch
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), targets)
        loss.backward()
        optimizer.step()
        loss.item()  # a sync point on a GPU, as the routines' logging
        steps += 1
    return time.perf_counter() - start, wait, steps


def measure(args: argparse.Namespace, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Time ``args.epochs`` epochs (after a warm-up one) for each num_workers setting."""
    import torch
    from training.data import build_loaders, set_epoch

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    rows = []
    for workers in args.workers:
        run_config = {**config, "DATA_LOADER_CONFIG": {**config["DATA_LOADER_CONFIG"], "num_workers": workers}}
        torch.manual_seed(config["SEED"])
        model, optimizer, loss_fn, train_set = build(run_config, device)
        divisor = int(getattr(model, "divisor", 1))
        loader, _ = build_loaders(run_config, (train_set, train_set), device, divisor)
        model.train()
        timings = []
        for index in range(args.epochs + 1):
            set_epoch(loader, config["SEED"], index)
            timings.append(epoch(model, optimizer, loss_fn, loader, device))
        seconds, waits, steps = (list(values) for values in zip(*timings[1:], strict=True))
        shares = [wait / total for total, wait in zip(seconds, waits, strict=True)]
        rows.append(
            {
                "num_workers": workers,
                "data_share": sum(waits) / sum(seconds),
                "share_spread": [min(shares), max(shares)],
                "s_per_epoch": statistics.median(seconds),
                "steps": steps[0],
                "ms_per_step": 1000 * sum(seconds) / sum(steps),
                "wait_ms_per_step": 1000 * sum(waits) / sum(steps),
                "warmup_share": timings[0][1] / timings[0][0],
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ["num_workers", "data share", "spread", "s/epoch", "steps", "ms/step", "wait ms/step"]
    lines = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for row in rows:
        low, high = row["share_spread"]
        lines.append(
            [
                str(row["num_workers"]),
                f"{row['data_share']:.3f}",
                f"{low:.3f}-{high:.3f}",
                f"{row['s_per_epoch']:.2f}",
                str(row["steps"]),
                f"{row['ms_per_step']:.1f}",
                f"{row['wait_ms_per_step']:.1f}",
            ]
        )
    print()
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tmp_path = Path(tmp)
        bake(tmp_path / "bake")
        folder = write_tiles(tmp_path / "tiles", args.tiles, args.size)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        config = bench_config(args, folder)
        cwd = Path.cwd()
        os.chdir(tmp_path)  # anything the project writes by default lands in the temporary folder
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the project's chatter stays out of the table
                rows = measure(args, config)
        finally:
            os.chdir(cwd)
    print(
        f"Data loading: {args.tiles} RGB PNG tiles of {args.size}x{args.size} (80% trained), batch {args.batch_size}, "
        f"patch {args.patch}, device {args.device}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs "
        f"({cpu_model()}); {args.epochs} epoch(s) per setting after a warm-up one."
    )
    print_table(rows)
    best = min(rows, key=lambda row: row["data_share"])
    print(f"lowest data share: {best['data_share']:.1%} with num_workers={best['num_workers']} (goal: under 10%)")
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
