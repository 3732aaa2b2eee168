"""Evaluate a checkpoint on a labelled folder: ``python evaluate.py --data FOLDER [--weights CKPT...] [--tile N]``.

FOLDER holds images/ and masks/ as a training folder does (utils/data/folder.py); masks are read with the run's
task, classes, MASK_VALUES and IGNORE_INDEX, images with its bands, normalisation and no-data value. The tables go to
``LOG_DIR/<run>/evaluation/<NAME>/`` (NAME: --name, default the folder's name): per_image.csv (dice and IoU per image
and class, NaN where truth and prediction are both empty), summary.csv (per class and their mean: the mean over the
images where the value is defined, their count, and the value pooled over all pixels), confusion.csv
and confusion.png (not for multi-label models). By default whole images are predicted the way validation does, so
the run's validation folder gives the figures of history.csv; ``--tile N`` predicts by overlapping tiles as
predict.py does and says how far the means move. Several checkpoints (an ensemble, utils/ensemble.py) write to
``LOG_DIR/<cross-validation>/evaluation/<NAME>/`` for a cross-validation's name, else to the first checkpoint's run
as ``<NAME>_ensemble<K>``; ``--tta`` adds ``_tta``. An ``.onnx`` file of export.py predicts through onnxruntime as
predict.py's ONNX path does (utils/onnx_evaluation.py), one image at a time, into ``<NAME>_onnx`` of its run; the
masks are read with config/train_config.py, which must be of the file's task and classes.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

import extensions
from config.device import DeviceError, get_device
from config.paths import GlobalConfig, get_global_config
from training.checkpoint import CheckpointError
from utils.data.images import DataError
from utils.ensemble import load_ensemble
from utils.evaluation import METRICS, samples_of, scores_of, tables, write_tables
from utils.files import safe_name
from utils.onnx_model import OnnxModelError, onnx_weights
from utils.prediction import Predictor
from utils.tiling import tile_for


def build_parser() -> argparse.ArgumentParser:
    """The command line of evaluate.py."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument(
        "--data", default=None, help="a labelled folder with images/ and masks/ (default: TEST_FOLDER of the config)"
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        help="checkpoints, run names or cross-validations; several: an ensemble; or one .onnx file of export.py "
        "(default: best.pt of the latest run)",
    )
    parser.add_argument("--tta", action="store_true", help="average over flips (and quarter turns of square images)")
    parser.add_argument("--tile", type=int, default=0, help="tile side in pixels; 0: whole images (default)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap, a fraction (default: 0.25)")
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --tile: also predict whole images and print how far the tiled means are from them "
        "(--no-compare for scenes too large for one pass; default: compare)",
    )
    parser.add_argument("--name", default=None, help="sub-folder of the results (default: the folder's name)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    return parser


def load(args: argparse.Namespace, global_config: GlobalConfig) -> tuple[Any, str, str]:
    """(model, the files it came from, the label of its tables' folder): a checkpoint's or an ensemble's Predictor,
    or an exported OnnxModel (label "onnx"). Raises OnnxModelError, DataError, CheckpointError, DeviceError."""
    onnx = onnx_weights(args.weights, args.tta)
    if onnx:
        # pylint: disable-next=import-outside-toplevel  # onnxruntime, and the config that reads the masks, on demand
        from config.train_config import TRAIN_CONFIG
        from utils.onnx_evaluation import load_onnx  # pylint: disable=import-outside-toplevel

        return load_onnx(onnx, args.device, TRAIN_CONFIG), onnx, "onnx"
    predictor, checkpoints = load_ensemble(args.weights, global_config, get_device(args.device), args.tta)
    weights = " + ".join(map(str, checkpoints)) + (" with TTA" if args.tta else "")
    return predictor, weights, getattr(predictor.model, "label", "")


def evaluate(args: argparse.Namespace) -> Path:
    """Evaluate as the arguments say; the folder of the tables.

    Raises:
        DataError, CheckpointError, DeviceError, OnnxModelError, ValueError: a bad folder, mask, checkpoint, .onnx
            file, device or class mapping.
    """
    global_config = get_global_config()
    predictor, weights, label = load(args, global_config)
    if args.tile % (divisor := predictor.divisor):
        suggestion = tile_for(args.tile, divisor)
        raise DataError(f"--tile {args.tile} is not a multiple of the model's {divisor}: use {suggestion}")
    folder, samples = samples_of(predictor, args.data)
    whole = scores_of(predictor, samples, 0, args.overlap) if args.compare or not args.tile else None
    scores = scores_of(predictor, samples, args.tile, args.overlap) if args.tile else whole
    name = safe_name(args.name or Path(args.data).resolve().name)
    name += f"_{label}" if label else ""  # not the checkpoint's own tables
    output = global_config.LOG_DIR / predictor.run_name / "evaluation" / name
    write_tables(output, tables(scores, [Path(image).name for image, _ in folder.pairs], predictor.classes))
    if isinstance(predictor, Predictor):  # an exported file carries no tracked run to send the tables to
        checkpoint = {"config": predictor.config, "run_name": predictor.run_name, "extensions": predictor.extensions}
        extensions.evaluated(checkpoint, output, global_config.LOG_DIR)  # e.g. the tables to the run's tracking
    means = scores.means()
    print(f"{len(samples)} image(s) of {args.data} with {weights}:")
    for metric in METRICS:
        value = means[metric]
        line = f"  {metric} {value:.4f} (mean over images and classes, undefined skipped)"
        line += f", pooled {means[f'{metric}_pooled']:.4f} (all pixels together)"
        if args.tile and whole is not None:
            line += f"; tiled by {args.tile} minus whole images: {value - whole.means()[metric]:+.6f}"
        print(line)
    print(f"tables in {output}")
    return output


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 on an error, with one line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is None:  # make evaluate without ARGS: the labelled test folder of config/train_config.py
        from config.train_config import TRAIN_CONFIG  # pylint: disable=import-outside-toplevel  # imports the models

        args.data = TRAIN_CONFIG.get("TEST_FOLDER") or parser.error(
            "--data is required (or set TEST_FOLDER in config/train_config.py)"
        )
    if args.tile < 0 or not 0.0 <= args.overlap < 1.0:  # the second refuses nan too
        parser.error(f"--tile must be >= 0 and --overlap in [0, 1), got {args.tile} and {args.overlap}")
    try:
        with torch.no_grad():
            evaluate(args)
    except (DataError, DeviceError, CheckpointError, OnnxModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # MASK_VALUES / IGNORE_INDEX that do not fit the task: the run's config, not the data
        print(f"error: the model's classes: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        print(f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
