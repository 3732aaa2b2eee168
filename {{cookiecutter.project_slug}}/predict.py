"""Predict masks: ``python predict.py -i IMAGES... -o OUTDIR [--weights best.pt]``.

Inputs are files, folders or glob patterns (PNG, JPG, .npy). Each image gives ``OUTDIR/<stem>.png``, a binary mask
(0 or 255). The model is rebuilt from the checkpoint's own config, so a checkpoint of any routine works; by default
it is best.pt of the latest run in WEIGHT_DIR.
"""

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from config.device import DeviceError, get_device
from config.paths import get_global_config
from config.serialize import from_jsonable
from training.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from utils.data.images import IMAGE_EXTENSIONS, DataError, read_image


def find_inputs(patterns: list[str]) -> list[Path]:
    """Expand files, folders and globs into a sorted list of image files."""
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            candidates = [p for p in path.iterdir() if p.is_file()]
        elif path.is_file():
            candidates = [path]
        else:
            candidates = [Path(p) for p in glob.glob(pattern, recursive=True)]
            if not candidates:
                raise DataError(f"no such file, folder or match: {pattern}")
        found.update(p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(patterns)}")
    return sorted(found)


def load_model(weights: Path, device: torch.device) -> tuple[nn.Module, int]:
    """Rebuild the model of a checkpoint from its own config and load its weights; also returns its input bands.

    Raises:
        CheckpointError: the checkpoint cannot be read, or its model cannot be rebuilt from its config.
    """
    checkpoint = load_checkpoint(weights, map_location=device)
    try:
        config = from_jsonable({key: checkpoint["config"][key] for key in ("MODEL", "MODEL_CONFIG")})
        model = config["MODEL"](**config["MODEL_CONFIG"])
        model.load_state_dict(checkpoint["model"])
    except (ImportError, TypeError, ValueError, RuntimeError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{weights}: cannot rebuild its model ({message})") from None
    return model.to(device).eval(), int(config["MODEL_CONFIG"].get("in_channels", 1))


@torch.no_grad()
def predict_mask(model: nn.Module, image: np.ndarray, device: torch.device, threshold: float = 0.5) -> np.ndarray:
    """Binary mask (H, W, uint8 0/255) of one [C, H, W] image; padded to the model's size divisor and cropped back."""
    tensor = torch.from_numpy(image)[None].to(device)
    height, width = tensor.shape[-2:]
    divisor = int(getattr(model, "divisor", 1))
    pad_h, pad_w = -height % divisor, -width % divisor
    if pad_h or pad_w:
        # Reflect rather than zero-pad: a black border would look like background and bias the edges.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        tensor = F.pad(tensor, (0, pad_w, 0, pad_h), mode=mode)
    probabilities = torch.sigmoid(model(tensor))[0, 0, :height, :width]
    return ((probabilities > threshold).cpu().numpy() * 255).astype(np.uint8)


def output_folder(output: str, inputs: list[Path]) -> Path:
    """The folder for the masks, created; refused when it is a file or a mask would overwrite an input.

    Raises:
        DataError: the folder cannot be used, or two inputs would give the same mask name, or a mask would replace
            an input (the masks go to ``<stem>.png``, which may be an input image itself).
    """
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"-o {output} is a file, not a folder; choose a folder for the masks")
    masks: dict[Path, Path] = {}
    for path in inputs:
        mask = (folder / f"{path.stem}.png").resolve()
        if mask in masks:
            raise DataError(f"{masks[mask]} and {path} would both write {mask.name}; predict them into two folders")
        masks[mask] = path
    overwritten = sorted(set(masks) & {path.resolve() for path in inputs})
    if overwritten:
        raise DataError(f"-o {output}: a mask would overwrite the input {overwritten[0]}; choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"-o {output} cannot be created ({err.strerror}); choose a folder you can write") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"-o {output} is not writable; choose a folder you can write")
    return folder


def build_parser() -> argparse.ArgumentParser:
    """The command line of predict.py."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("-i", "--input", nargs="+", required=True, help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, help="folder for the PNG masks (created)")
    parser.add_argument(
        "--weights", default=None, help="a checkpoint file or a run name (default: best.pt of the latest run)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="probability above which a pixel is foreground (default: 0.5)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:  # also refuses nan: every mask would be empty or full
        parser.error(f"--threshold must be a probability between 0 and 1 (exclusive), got {args.threshold}")
    try:
        inputs = find_inputs(args.input)
        device = get_device(args.device)
        try:
            weights = find_checkpoint(args.weights or "latest", get_global_config(), "best.pt")
        except CheckpointError as err:
            raise CheckpointError(f"--weights {err}" if args.weights else f"{err} (or pass --weights)") from None
        model, channels = load_model(weights, device)
        output = output_folder(args.output, inputs)
        for path in inputs:
            mask = predict_mask(model, read_image(path, channels), device, args.threshold)
            Image.fromarray(mask).save(output / f"{path.stem}.png")
    except (DataError, DeviceError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder made read-only meanwhile: the machine's, not the code's
        print(f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    print(f"{len(inputs)} mask(s) written to {output} with {weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
