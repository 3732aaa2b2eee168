"""Describe a labelled data set and suggest config lines: ``python data_report.py [DATA] [--config FILE] [--set ...]``.

DATA is a folder of images/ and masks/ (utils/data/folder.py); without it, the config's DATASET (and VAL_DATASET).
Sizes and file types come from every file's header; pixel values, classes and objects from the samples that
training's normalisation pass reads (up to --max-images, seeded, as train.py does): those figures say "sampled".
Masks are encoded with the config's TASK, CLASSES and MASK_VALUES. It writes nothing.
"""

import argparse
import math
import shlex
import sys
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from config.overrides import add_config_arguments, resolve_config
from config.schema import validate_config
from config.serialize import ConfigError
from training.build import instantiate
from training.data import mask_encoder
from training.records import one_line
from utils.data.fingerprint import RARE_SHARE, Fingerprint, class_weights, stored_dtype
from utils.data.folder import SegmentationFolder, group_names
from utils.data.images import DataError, image_size
from utils.data.normalization import compute_statistics

MAX_SIDE = 512  # images with a side above this (or of several sizes) train on patches of at most this size
DEEPEST = 8  # pixels that the U-Net's deepest level keeps at least, per side
MIN_STEPS = 16  # optimizer steps an epoch that a suggested batch size leaves at least (the whole folder counted)


def build_parser() -> argparse.ArgumentParser:
    """The command line: DATA, the config options of train.py, --max-images and --memory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("data", nargs="?", help="a folder with images/ and masks/ (default: the config's datasets)")
    add_config_arguments(parser)
    parser.add_argument("--max-images", type=int, default=256, help="images whose pixels are read (default: 256)")
    parser.add_argument("--memory", type=float, default=8.0, help="GiB for the batch-size rule (default: 8)")
    return parser


def headers(dataset: Dataset) -> tuple[list[tuple[int, int]], Counter] | None:
    """Every image's (H, W) and the count of each stored dtype, from the file headers; None without file names."""
    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        return None
    return [image_size(image, "image") for image, _ in pairs], Counter(stored_dtype(image) for image, _ in pairs)


def describe(name: str, dataset: Dataset, config: dict[str, Any], max_images: int) -> tuple[Fingerprint, list]:
    """Print the figures of ``dataset``; return its Fingerprint and its image sizes (headers, else sampled)."""
    fingerprint = Fingerprint(mask_encoder(config), dataset, config["NODATA"], config["SEED"])
    stats = compute_statistics(dataset, "meanstd", config["NODATA"], max_images, config["SEED"], fingerprint)
    found = headers(dataset)
    sizes, dtypes = found or (fingerprint.sizes, Counter({"float32 (the dataset's own)": len(dataset)}))
    read = fingerprint.images
    print(f"{name}: {len(dataset)} images; {read} read for the figures marked sampled (seeded, as train.py reads)")
    (heights, widths), tag = np.array(sizes).T, "" if found else " (sampled)"
    lines = [
        f"size HxW{tag}: min {heights.min()}x{widths.min()}, median {int(np.median(heights))}x"
        f"{int(np.median(widths))}, max {heights.max()}x{widths.max()}; {len(set(sizes))} distinct",
        f"bands (sampled): {sorted(fingerprint.bands)}; stored as {', '.join(f'{k} ({v})' for k, v in dtypes.items())}",
    ]
    for band, (low, p1, p50, p99, high) in enumerate(fingerprint.band_percentiles()):
        lines.append(
            f"band {band} (sampled, as read): min {low:.4g}, p1 {p1:.4g}, p50 {p50:.4g}, p99 {p99:.4g}, "
            f"max {high:.4g}; mean {stats['mean'][band]:.4g}, std {stats['std'][band]:.4g}"
        )
    lines.append(
        f"no-data pixels (NaN, inf, NODATA; sampled): {100 * fingerprint.invalid / fingerprint.pixels_read:.2f} %"
    )
    values = sorted(fingerprint.mask_values)
    lines.append(f"mask values (sampled): {', '.join(map(str, values[:20]))}{' ...' if len(values) > 20 else ''}")
    names = list(config["CLASSES"])[-len(fingerprint.pixels) :]
    for c, share in enumerate(fingerprint.shares()):
        objects = np.array(fingerprint.per_image[c])
        lines.append(
            f"class {names[c]!r} (sampled): {100 * share:.2f} % of pixels, absent from "
            f"{100 * fingerprint.absent[c] / read:.1f} % of images; objects per image: min {objects.min()}, "
            f"median {np.median(objects):g}, max {objects.max()}"
        )
    if config["VAL_GROUPS"]:
        groups = Counter(group_names(dataset, config["VAL_GROUPS"]))
        shown = ", ".join(f"{g} ({k})" for g, k in groups.most_common(8))
        lines.append(f"VAL_GROUPS: {len(groups)} groups (images): {shown}{' ...' if len(groups) > 8 else ''}")
    print("\n".join(f"  {line}" for line in lines))
    return fingerprint, sizes


def activation_bytes(config: dict[str, Any], bands: int, side: int) -> float:
    """Bytes that autograd keeps for backward per sample of ``side`` x ``side``: one forward pass of the config's
    model on [1, bands, 64, 64] (distinct storages of its saved tensors), scaled by area."""
    model_config = config["MODEL_CONFIG"]
    if "in_channels" in model_config:
        config = {**config, "MODEL_CONFIG": {**model_config, "in_channels": bands}}
    model, seen = instantiate(config, "MODEL").train(), {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.zeros(1, bands, 64, 64))
    return sum(seen.values()) * side**2 / 64**2


def suggest(
    config: dict[str, Any], fingerprint: Fingerprint, sizes: list, memory: float, images: int
) -> dict[str, str]:
    """Suggested settings (``KEY=VALUE`` for --set) with their reasons, from the figures of the training data
    (``images``: how many the data set holds; ``sizes`` may be a sample of them)."""
    lines, short = {}, np.array([min(size) for size in sizes])
    patch = (
        2 ** int(math.log2(min(np.median(short), MAX_SIDE))) if len(set(sizes)) > 1 or short.max() > MAX_SIDE else None
    )
    why = f"{len(set(sizes))} size(s), short side up to {short.max()} px: patches make even batches and bound memory"
    lines[f"PATCH_SIZE={patch}"] = why if patch else f"every image is {sizes[0][0]}x{sizes[0][1]}: tiles batch whole"
    side = patch or int(short.min())
    depth = min(max(int(math.log2(max(side / DEEPEST, 2))), 1), 5)
    pad = np.mean([(-(-h // 2**depth) * -(-w // 2**depth) * 4**depth) / (h * w) - 1 for h, w in sizes])
    lines[f"MODEL_CONFIG.depth={depth}"] = (
        f"{side} px / 2**{depth} leaves {side // 2**depth} px (>= {DEEPEST}) at the deepest level; divisor {2**depth}"
        + ("" if patch else f": padding adds {100 * pad:.1f} % pixels")
    )
    bands = max(fingerprint.bands)
    if config["MODEL_CONFIG"].get("in_channels", bands) != bands:
        lines[f"MODEL_CONFIG.in_channels={bands}"] = f"the images have {bands} band(s)"
    outliers = [
        b
        for b, (low, p1, _, p99, high) in enumerate(fingerprint.band_percentiles())
        if max(high - p99, p1 - low) > max(p99 - p1, 1e-12)
    ]
    lines[f"NORMALIZATION={'percentile' if outliers else 'meanstd'}"] = (
        f"band(s) {outliers}: min or max lies further from p1/p99 than the 1-99 range: outliers would dominate "
        "mean/std (Cellpose's normalize99)"
        if outliers
        else "no band has outliers beyond its 1-99 percentile range"
    )
    values = sorted(v for v in fingerprint.mask_values if not isinstance(v, tuple))
    if config["TASK"] == "binary" and 2 < len(values) <= 16 and all(float(v).is_integer() for v in values):
        lines["TASK=multiclass"] = f"masks hold {values}: classes? then CLASSES names one each (MASK_VALUES maps them)"
    shares, names = fingerprint.shares(), config["CLASSES"][-len(fingerprint.pixels) :]
    if weights := class_weights(shares, config["TASK"]):
        rare = ", ".join(f"{n!r} {100 * s:.1f} %" for n, s in zip(names, shares, strict=True) if 0 < s < RARE_SHARE)
        lines[f"LOSS_CONFIG.class_weights={weights}"] = (
            f"rare: {rare} of the pixels; sqrt(inverse share), measured on a thin class: docs/data.md, 'Rare classes'"
        )
    per_sample = activation_bytes(config, bands, patch or int(max(max(s) for s in sizes)))
    fits = 2 ** int(math.log2(max(memory * 2**29 / per_sample, 1)))
    steps = 2 ** int(math.log2(max(images // MIN_STEPS, 2)))  # a batch of all the data would step once an epoch
    lines[f"DATA_LOADER_CONFIG.batch_size={min(fits, steps)}"] = (
        f"rule: a power of two, batch x saved activations ({per_sample / 2**20:.1f} MiB per sample, measured) <= half "
        f"of --memory {memory:g} GiB (up to {fits}; the other half for gradients, weights, optimizer state, "
        f"workspace), and at most 1/{MIN_STEPS} of the {images} images (up to {steps}: {MIN_STEPS}+ steps an epoch)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2: a mistake in the command, config or data)."""
    args = build_parser().parse_args(argv)
    # Small per-image operations: one thread is faster than a pool (5x less CPU on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lines = report(args)
    except (ConfigError, DataError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print("suggested config lines (train.py --set KEY=VALUE, or the key in config/train_config.py), with reasons:")
    for line, reason in lines.items():
        print(f"  --set {shlex.quote(line):<40} # {reason}")
    return 0


def report(args: argparse.Namespace) -> dict[str, str]:
    """Print the figures of the data sets that ``args`` name; return the suggested lines."""
    if args.max_images < 1 or args.memory <= 0:
        raise ConfigError(f"--max-images must be >= 1 and --memory > 0, got {args.max_images} and {args.memory}")
    config = validate_config(resolve_config(args)[0])
    if args.data is not None:
        datasets = {args.data: SegmentationFolder(args.data)}
    else:
        datasets = {"DATASET": instantiate(config, "DATASET")}
        if config["VAL_DATASET"] is not None:
            datasets["VAL_DATASET"] = instantiate(config, "VAL_DATASET")
    described = [describe(name, dataset, config, args.max_images) for name, dataset in datasets.items()]
    return suggest(config, *described[0], args.memory, len(next(iter(datasets.values()))))


if __name__ == "__main__":
    sys.exit(main())
