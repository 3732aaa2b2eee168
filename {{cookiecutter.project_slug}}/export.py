"""Export a checkpoint to ONNX: ``python export.py [--weights CKPT|RUN|latest] [-o OUT.onnx] [--opset N]``.

One self-contained file (weights inside, no external-data sidecar) with dynamic batch, height and width, and what the
run was trained with in its metadata: task, classes, bands, divisor, threshold, normalisation statistics, no-data
value and source run (the contract: utils/onnx_model.py). Normalisation and padding stay outside the graph. By
default best.pt of the latest run goes to ``best.onnx`` beside it (``WEIGHT_DIR/<run>/best.onnx``; a checkpoint
file ``X.pt`` to ``X.onnx``). Before the file is kept, onnxruntime runs it on seeded random images of two sizes
(multiples of the divisor, batch 2 and 1) and its logits must match torch's within 1e-4; the largest difference
is printed. One checkpoint only: an ensemble's averaging is not a graph of one model.
"""

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from config.paths import get_global_config
from training.checkpoint import CheckpointError, find_checkpoint
from utils.ensemble import cv_checkpoints
from utils.onnx_model import INPUT_NAME, OUTPUT_NAME, metadata_props, read_metadata
from utils.prediction import Predictor, load_predictor

TOLERANCE = 1e-4  # max |onnxruntime - torch| on logits; float32 kernels differ by ~1e-7 on the default U-Net
THRESHOLD = 0.5  # predict.py's default --threshold, the one the file advertises


class ExportError(RuntimeError):
    """The model cannot be exported, or its ONNX file does not compute what torch computes."""


def check_sizes(divisor: int) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the check: about 64x96 in multiples of ``divisor``, non-square so that a swapped
    axis shows, batch 2; then the transpose with batch 1, so that every dynamic axis takes two values."""
    height = divisor * max(1, math.ceil(64 / divisor))
    width = divisor * max(1, math.ceil(96 / divisor))
    width += divisor if width == height else 0
    return [(2, height, width), (1, width, height)]


def output_path(output: str | None, checkpoint: Path) -> Path:
    """``-o`` (default: the checkpoint with the suffix .onnx), refused when it would replace the checkpoint.

    Raises:
        ExportError: ``output`` is a folder or the checkpoint itself.
    """
    path = Path(output) if output else checkpoint.with_suffix(".onnx")
    if path.is_dir():
        raise ExportError(f"-o {path} is a folder; name the file, e.g. {path / 'model.onnx'}")
    if path.resolve() == checkpoint.resolve():
        raise ExportError(f"-o {path} is the checkpoint itself; choose another file, e.g. {path.with_suffix('.onnx')}")
    return path


def write_onnx(predictor: Predictor, checkpoint: Path, path: Path, opset: int | None) -> None:
    """The model of ``predictor`` as one ONNX file at ``path`` (input ``image`` [N, C, H, W] -> output ``logits``
    [N, K, H, W], N, H and W dynamic) with the metadata of utils/onnx_model.py.

    Raises:
        ExportError: the exporter refuses the model (an operator without ONNX counterpart, a data-dependent shape).
    """
    batch, height, width = check_sizes(predictor.divisor)[0]
    sample = torch.zeros(batch, predictor.in_channels, height, width)
    try:
        with warnings.catch_warnings():  # the exporter's own deprecation notices: about torch, not this model
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                predictor.model,
                (sample,),
                dynamo=True,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: "batch", 2: "height", 3: "width"},),
                opset_version=opset,
                verbose=False,
            )
    except Exception as err:  # pylint: disable=broad-exception-caught  # torch.export and onnxscript share no base
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{checkpoint}: its model cannot be exported ({type(err).__name__}: {first})") from None
    nodata = predictor.nodata
    program.model.metadata_props.update(
        metadata_props(
            {
                "task": predictor.task,
                "classes": predictor.classes,
                "in_channels": predictor.in_channels,
                "channels": predictor.channels,
                "divisor": predictor.divisor,
                "threshold": THRESHOLD,
                "normalization": predictor.stats,
                "nodata": None if nodata is None else float(nodata),
                "run_name": predictor.run_name,
                "source": checkpoint.name,  # the file's name alone: a shipped model carries no local path
                "torch_version": torch.__version__,
            }
        )
    )
    program.save(path, external_data=False)  # the weights inside: one file to ship, no .data beside it


def max_difference(predictor: Predictor, path: Path) -> float:
    """The largest |onnxruntime logits - torch logits| over the sizes of :func:`check_sizes`, on seeded standard
    normal images (what normalised images look like)."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng, differences = np.random.default_rng(0), []
    for batch, height, width in check_sizes(predictor.divisor):
        images = rng.standard_normal((batch, predictor.in_channels, height, width), dtype=np.float32)
        with torch.no_grad():
            expected = predictor.model(torch.from_numpy(images)).float().numpy()
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
        differences.append(np.abs(logits - expected).max())
    return float(np.max(differences))  # NaN stays NaN, where max() would skip it


def export(weights: list[str] | None, output: str | None, opset: int | None) -> tuple[Path, Path, float]:
    """Export as the arguments say: (the checkpoint, the ONNX file, the check's max difference). The file appears
    only once the check passes (written beside it first, then renamed).

    Raises:
        CheckpointError: no such checkpoint or run, several, or a cross-validation.
        ExportError: a bad ``-o``, a model that cannot be exported, or logits that differ by TOLERANCE or more.
        OSError: the file cannot be written.
    """
    global_config = get_global_config()
    if weights and len(weights) > 1:
        raise CheckpointError(f"--weights takes one checkpoint, got {len(weights)}: an ensemble is not one model")
    name = weights[0] if weights else "latest"
    if cv_checkpoints(name, global_config):
        raise CheckpointError(f"--weights {name} is a cross-validation; export one fold's run or checkpoint")
    try:
        checkpoint = find_checkpoint(name, global_config, "best.pt")
    except CheckpointError as err:
        raise CheckpointError(f"--weights {err}" if weights else f"{err} (or pass --weights)") from None
    path = output_path(output, checkpoint)
    predictor = load_predictor(checkpoint, torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")  # beside it: the rename cannot cross disks
    try:
        write_onnx(predictor, checkpoint, temporary, opset)
        difference = max_difference(predictor, temporary)
        if math.isnan(difference) or difference >= TOLERANCE:
            raise ExportError(f"onnxruntime's logits differ from torch's by {difference:.2e} (over {TOLERANCE:g})")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return checkpoint, path, difference


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status: 0, or 2 on an error (one line)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--weights", nargs="+", help="a checkpoint, a run name or latest (default: latest's best.pt)")
    parser.add_argument("-o", "--output", help="the ONNX file (default: the checkpoint's name with .onnx, beside it)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; 20 in torch 2.13)")
    args = parser.parse_args(argv)
    try:
        checkpoint, path, difference = export(args.weights, args.output, args.opset)
    except (CheckpointError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder: the machine's, not the model's
        print(f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    metadata = read_metadata(path)  # read back from the file: what a reader of it will find
    sizes = " and ".join(f"{b}x{metadata['in_channels']}x{h}x{w}" for b, h, w in check_sizes(metadata["divisor"]))
    print(f"{checkpoint} -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"onnxruntime against torch on {sizes} images: max |logits difference| {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
