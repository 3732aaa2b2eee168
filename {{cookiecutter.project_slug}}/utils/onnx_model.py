"""The ONNX files that export.py writes, read without torch: this module imports no torch (onnxruntime only
when given a path), so that a machine with onnxruntime alone learns what a file expects.

The contract (``format_version`` "1"). The graph takes ``image``, float32 ``[N, C, H, W]``: C = ``in_channels``,
H and W multiples of ``divisor``, values as training saw them (normalised, no-data pixels 0); it gives ``logits``,
float32 ``[N, K, H, W]``, K = ``len(classes)``. N, H and W are dynamic. Normalisation and padding are not in the
graph: the reader applies ``normalization`` and pads to ``divisor`` (in numpy) before running it, then crops.
Each value of the model's ``metadata_props`` is a JSON string:

- ``format_version``: "1", this contract.
- ``task``: "binary", "multiclass" or "multilabel" (sigmoid per channel, or softmax over channels).
- ``classes``: the class names, one per output channel (binary: the foreground's).
- ``in_channels``: the bands the model takes; ``channels``: the bands images are read with (1 or 3 converts grey
  and colour files, as training's reader did).
- ``divisor``: what H and W must divide by.
- ``threshold``: the probability above which a pixel is foreground (predict.py's default, 0.5).
- ``normalization``: the run's statistics (utils/data/normalization.py: ``method`` "meanstd" with ``mean`` and
  ``std``, or "percentile" with its range, one value per band), or null: images go in as read.
- ``nodata``: the image value that means no data (NaN always does), or null.
- ``run_name``, ``source``: the run and the checkpoint file (its name, no local path) the file was exported from;
  ``torch_version``: the exporter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FORMAT_VERSION = "1"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
KEYS = (
    "format_version",
    "task",
    "classes",
    "in_channels",
    "channels",
    "divisor",
    "threshold",
    "normalization",
    "nodata",
    "run_name",
    "source",
    "torch_version",
)


class OnnxModelError(RuntimeError):
    """An ONNX file that onnxruntime cannot open, or whose metadata is not this contract's."""


def onnx_weights(weights: list[str] | None, tta: bool = False) -> str | None:
    """The ``.onnx`` file among ``--weights`` (predict.py, evaluate.py), or None: checkpoints or run names only.

    Raises:
        OnnxModelError: an .onnx file with other weights or ``--tta``: ensembles and TTA need checkpoints.
    """
    onnx = [name for name in weights or [] if name.lower().endswith(".onnx")]
    if onnx and (len(onnx) < len(weights or []) or len(onnx) > 1 or tta):
        raise OnnxModelError("--weights: one .onnx file alone, without --tta (an ensemble or TTA needs checkpoints)")
    return onnx[0] if onnx else None


def metadata_props(values: dict[str, Any]) -> dict[str, str]:
    """``values`` (every key of KEYS but ``format_version``) -> the ``metadata_props`` strings: each value as JSON.
    A NaN no-data value becomes null (NaN means no data anyway, and is not JSON).

    Raises:
        KeyError: a key of the contract is missing.
        TypeError: a value that JSON cannot hold (e.g. a tensor in the statistics).
    """
    values = {**values, "format_version": FORMAT_VERSION}
    nodata = values["nodata"]
    if nodata is not None and math.isnan(float(nodata)):
        values["nodata"] = None
    return {key: json.dumps(values[key], allow_nan=False) for key in KEYS}


def read_metadata(source: str | Path | Any) -> dict[str, Any]:
    """The metadata of an exported model: a path, or an ``onnxruntime.InferenceSession`` already open on it ->
    {key: decoded JSON value} for every key of KEYS (``format_version`` "1", ``classes`` a list, ``divisor`` an int,
    ``normalization`` a dict or None, ...).

    Raises:
        OnnxModelError: the file cannot be opened by onnxruntime, lacks a key of the contract, holds a value that is
            not JSON, or is of another format version.
    """
    if isinstance(source, str | Path):
        import onnxruntime  # pylint: disable=import-outside-toplevel  # only for paths: a session brings its own

        try:
            source = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        except Exception as err:  # pylint: disable=broad-exception-caught  # onnxruntime's errors share no base
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxModelError(f"{source}: onnxruntime cannot open it ({first})") from None
    stored = source.get_modelmeta().custom_metadata_map
    missing = [key for key in KEYS if key not in stored]
    if missing:
        raise OnnxModelError(f"not a model of export.py: no {', '.join(missing)} in its metadata")
    try:
        values = {key: json.loads(stored[key]) for key in KEYS}
    except ValueError as err:
        raise OnnxModelError(f"its metadata is not JSON ({err})") from None
    if values["format_version"] != FORMAT_VERSION:
        raise OnnxModelError(f"format version {values['format_version']!r}; this reader knows {FORMAT_VERSION!r}")
    return values
