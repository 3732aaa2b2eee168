"""Predict masks: ``python predict.py -i IMAGES... -o OUTDIR [--weights CKPT...] [--tile 512] [--probabilities]``.

Inputs are files, folders or glob patterns (PNG, JPEG, TIFF, .npy) of any size. Each image gives ``OUTDIR/<stem>.png``:
0/255 for a binary model, class indices for a multi-class one (``<stem>.tif`` for TIFF inputs and for multi-label
models, one 0/255 band per label); ``--probabilities`` adds ``<stem>_prob.tif`` (float32, one band per class). A
georeferenced TIFF gives GeoTIFFs with its CRS and transform when rasterio is installed. Large images are predicted
in overlapping tiles, blended, so that memory follows the image and not the network. The model is rebuilt from the
checkpoint's own config with its normalisation; by default it is best.pt of the latest run in WEIGHT_DIR. Hidden and
system files that folders and patterns find (``._0000.png``, ``@eaDir/``: utils/data/system_files.py) are skipped and
counted in one line; a file named on the command line is read whatever its name. Several checkpoints (or a
cross-validation's name) predict as an ensemble and ``--tta`` averages over flips: utils/ensemble.py.
"""

import argparse
import glob
import os
import sys
from pathlib import Path

from config.device import DeviceError, get_device
from config.paths import get_global_config
from training.checkpoint import CheckpointError
from utils.data.images import IMAGE_EXTENSIONS, DataError, read_image
from utils.data.system_files import is_system_file, skipped_line
from utils.ensemble import load_ensemble
from utils.prediction import load_model, output_names, predict_mask, write_outputs
from utils.tiling import sliding_window, tile_for

__all__ = ["find_inputs", "load_model", "main", "output_folder", "predict_mask"]


def find_inputs(patterns: list[str], skipped: list[Path] | None = None) -> list[Path]:
    """Expand files, folders and globs into a sorted list of image files. Hidden and system files that a folder or
    pattern finds (any part of the path below the folder, or below the pattern's fixed start, hidden or a system
    folder) go to ``skipped`` instead; a file named as such is kept.

    Raises:
        DataError: a pattern matches nothing, or no image is left.
    """
    found: set[Path] = set()
    skipped = [] if skipped is None else skipped
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            base, candidates = path, [p for p in path.iterdir() if p.is_file()]
        elif path.is_file():
            base, candidates = None, [path]
        else:
            magic = next((i for i, part in enumerate(path.parts) if glob.has_magic(part)), len(path.parts))
            matches = [Path(p) for p in glob.glob(pattern, recursive=True)]
            base, candidates = Path(*path.parts[:magic]), [p for p in matches if p.is_file()]
            if not matches:
                raise DataError(f"no such file, folder or match: {pattern}")
        for candidate in (p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS):
            if base is not None and is_system_file(candidate.relative_to(base)):
                skipped.append(candidate)
            else:
                found.add(candidate)
    if not found:
        also = f"; {skipped_line(skipped)}" if skipped else ""
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(patterns)}{also}")
    return sorted(found)


def output_folder(output: str, inputs: list[Path], names: dict[Path, list[str]] | None = None) -> Path:
    """The folder for the outputs, created; refused when it is a file or an output would overwrite an input or
    another output. ``names``: the files each input writes (default ``<stem>.png``).

    Raises:
        DataError: the folder cannot be used, or two inputs would write the same file, or an output would replace
            an input (e.g. ``<stem>.png`` in the input's own folder).
    """
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"-o {output} is a file, not a folder; choose a folder for the masks")
    written: dict[Path, Path] = {}
    for path in inputs:
        for name in (names or {}).get(path, [f"{path.stem}.png"]):
            target = (folder / name).resolve()
            if target in written:
                raise DataError(f"{written[target]} and {path} would both write {name}; predict them into two folders")
            written[target] = path
    overwritten = sorted(set(written) & {path.resolve() for path in inputs})
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
    parser.add_argument(
        "-i",
        "--input",
        nargs="+",
        required=True,
        help="image files, folders or glob patterns; hidden and system files (._x.png, @eaDir/) that a folder or "
        "pattern finds are skipped, a file named here is read",
    )
    parser.add_argument("-o", "--output", required=True, help="folder for the masks (created)")
    parser.add_argument(
        "--weights",
        nargs="+",
        help="checkpoints, run names or cross-validations; several: an ensemble (default: best.pt of the latest run)",
    )
    parser.add_argument("--tta", action="store_true", help="average over flips (and quarter turns of square tiles)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="probability above which a pixel is foreground (default: 0.5)"
    )
    parser.add_argument("--tile", type=int, default=512, help="tile side in pixels; 0: whole images (default: 512)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap, a fraction (default: 0.25)")
    parser.add_argument("--probabilities", action="store_true", help="also write <stem>_prob.tif (float32)")
    return parser


def main(argv: list[str] | None = None) -> int:  # pylint: disable=too-many-locals  # one loop, read top to bottom
    """Entry point; returns the process exit status: 0, 1 when some inputs could not be read, 2 on an error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:  # also refuses nan: every mask would be empty or full
        parser.error(f"--threshold must be a probability between 0 and 1 (exclusive), got {args.threshold}")
    if args.tile < 0 or not 0.0 <= args.overlap < 1.0:  # the second refuses nan too
        parser.error(f"--tile must be >= 0 and --overlap in [0, 1), got {args.tile} and {args.overlap}")
    written, skipped = 0, []
    try:
        inputs = find_inputs(args.input, skipped)
        if skipped:
            print(skipped_line(sorted(set(skipped))))
        device = get_device(args.device)
        predictor, checkpoints = load_ensemble(args.weights, get_global_config(), device, args.tta)
        weights = " + ".join(map(str, checkpoints)) + (" with TTA" if args.tta else "")
        divisor = predictor.divisor
        if args.tile % divisor:
            raise DataError(
                f"--tile {args.tile} is not a multiple of the model's {divisor}: use {tile_for(args.tile, divisor)}"
            )
        names = {path: output_names(path, predictor.task, args.probabilities) for path in inputs}
        output = output_folder(args.output, inputs, names)
        for path in inputs:
            try:
                image = read_image(path, predictor.channels, expected_by=f"the model of {weights}")
            except DataError as err:  # one bad file among many: say so, predict the others, exit 1 at the end
                print(f"error: {err}", file=sys.stderr)
                continue
            logits = sliding_window(predictor.model, predictor.prepare(image), args.tile, args.overlap, divisor)
            del image
            write_outputs([output / name for name in names[path]], logits, predictor.task, args.threshold, path)
            written += 1
    except (DataError, DeviceError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder made read-only meanwhile: the machine's, not the code's
        print(f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    if written < len(inputs):
        print(f"{written} of {len(inputs)} mask(s) written to {output} with {weights}")
        return 1
    print(f"{written} mask(s) written to {output} with {weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
