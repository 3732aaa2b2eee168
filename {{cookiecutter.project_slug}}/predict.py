"""Predict masks: ``python predict.py -i IMAGES... -o OUTDIR [--weights CKPT...] [--tile 512] [--probabilities]``.

Inputs are files, folders or glob patterns (PNG, JPEG, TIFF, .npy) of any size. Each image gives ``OUTDIR/<stem>.png``:
0/255 for a binary model, class indices for a multi-class one (``<stem>.tif`` for TIFF inputs and for multi-label
models, one 0/255 band per label); ``--probabilities`` adds ``<stem>_prob.tif`` (float32, one band per class). A
georeferenced TIFF gives GeoTIFFs with its CRS and transform when rasterio is installed. Large images are predicted
in overlapping tiles, blended, so that memory follows the image and not the network. The model is rebuilt from the
checkpoint's own config with its normalisation; by default it is best.pt of the latest run in WEIGHT_DIR. Hidden and
system files that folders and patterns find (``._0000.png``, ``@eaDir/``: utils/data/system_files.py) are skipped and
counted in one line; a file named on the command line is read whatever its name. Several checkpoints (or a
cross-validation's name) predict as an ensemble and ``--tta`` averages over flips: utils/ensemble.py. An ``.onnx``
file of export.py predicts the same without torch (utils/onnx_inference.py): one file, no --tta.
"""

import argparse
import sys
from collections.abc import Callable
from typing import Any

from utils.data.images import DataError, read_image
from utils.data.system_files import skipped_line
from utils.onnx_model import OnnxModelError, onnx_weights
from utils.outputs import find_inputs, output_folder, output_names

__all__ = ["find_inputs", "main", "output_folder"]  # and load_model, predict_mask: see __getattr__


def __getattr__(name: str) -> Any:
    """load_model and predict_mask of utils/prediction.py, imported when asked: the ONNX path imports no torch."""
    if name in ("load_model", "predict_mask"):
        from utils import prediction  # pylint: disable=import-outside-toplevel

        return getattr(prediction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(args: argparse.Namespace) -> tuple[Any, str, Callable, Callable]:
    """(what predicts: task, channels, divisor, prepare; its description; image -> logits; the writer). ``.onnx``
    files take utils/onnx_inference.py, which imports no torch; checkpoints take torch, imported here only.

    Raises:
        DataError: a bad device or checkpoint.
        OnnxModelError: .onnx mixed with checkpoints, several .onnx files or --tta with one; a file that onnxruntime
            cannot open or that export.py did not write.
    """
    onnx = onnx_weights(args.weights, args.tta)
    if onnx:
        from utils.onnx_inference import OnnxPredictor  # pylint: disable=import-outside-toplevel
        from utils.outputs import write_array_outputs  # pylint: disable=import-outside-toplevel

        model = OnnxPredictor(onnx, args.device)
        return (
            model,
            onnx,
            lambda image: model.logits(model.prepare(image), args.tile, args.overlap),
            write_array_outputs,
        )
    # pylint: disable=import-outside-toplevel  # torch's path: seconds of imports the ONNX path does without
    try:
        from config.device import DeviceError, get_device
        from config.paths import get_global_config
        from training.checkpoint import CheckpointError
        from utils.ensemble import load_ensemble
        from utils.prediction import write_outputs
        from utils.tiling import sliding_window
    except ModuleNotFoundError as err:  # an inference environment (requirements-inference.txt, the inference image)
        raise DataError(
            f"--weights {' '.join(args.weights or ['(the latest run)'])}: a checkpoint needs torch and the training "
            f"code, and {err.name} is missing here; give an .onnx file of export.py"
        ) from None

    try:
        predictor, checkpoints = load_ensemble(args.weights, get_global_config(), get_device(args.device), args.tta)
    except (DeviceError, CheckpointError) as err:
        raise DataError(str(err)) from None
    weights = " + ".join(map(str, checkpoints)) + (" with TTA" if args.tta else "")
    tile, overlap, divisor = args.tile, args.overlap, predictor.divisor
    return (
        predictor,
        weights,
        lambda image: sliding_window(predictor.model, predictor.prepare(image), tile, overlap, divisor),
        write_outputs,
    )


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
        predictor, weights, infer, write = load(args)
        divisor = predictor.divisor
        if args.tile % divisor:
            suggestion = max(divisor, round(args.tile / divisor) * divisor)  # utils/tiling.tile_for, without torch
            raise DataError(f"--tile {args.tile} is not a multiple of the model's {divisor}: use {suggestion}")
        names = {path: output_names(path, predictor.task, args.probabilities) for path in inputs}
        output = output_folder(args.output, inputs, names)
        for path in inputs:
            try:
                image = read_image(path, predictor.channels, expected_by=f"the model of {weights}")
            except DataError as err:  # one bad file among many: say so, predict the others, exit 1 at the end
                print(f"error: {err}", file=sys.stderr)
                continue
            logits = infer(image)
            del image
            write([output / name for name in names[path]], logits, predictor.task, args.threshold, path)
            written += 1
    except (DataError, OnnxModelError) as err:
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
