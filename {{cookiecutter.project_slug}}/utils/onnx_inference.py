"""Inference with an exported model (export.py) without torch: onnxruntime and numpy only, so that predict.py runs
where the inference environment is onnxruntime, numpy, pillow and tifffile (rasterio optional).

It computes what the checkpoint path computes: images normalised as utils/data/normalization.normalize does (no-data
pixels 0 after it, as utils/prediction.Predictor.prepare), padded to the divisor as utils/tiling.pad_to_multiple
(numpy's "reflect" is torch's "reflect": the edge is not repeated; "edge" is "replicate"), and scenes larger than a
tile blended as MONAI's ``sliding_window_inference(..., overlap, mode="gaussian")`` blends them in 2-D: its window
starts (monai.inferers.utils._get_scan_interval, monai.data.utils.dense_patch_slices), its Gaussian importance map
(monai.data.utils.compute_importance_map: sigma 0.125 of the window side, clamped below at its minimum or 1e-3) and
its division by the summed weights. tests/test_onnx_predict.py holds both paths to 1e-4 on logits.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from utils.data.images import DataError
from utils.onnx_model import INPUT_NAME, OUTPUT_NAME, OnnxModelError, read_metadata

SIGMA_SCALE = 0.125  # MONAI's default for mode="gaussian"
_FLOOR = 1e-6  # utils/data/normalization.py's: a band whose std or range is under it is shifted only


def providers(device: str) -> list[Any]:
    """onnxruntime's execution providers for predict's ``--device``: auto (CUDA when onnxruntime has it, else CPU),
    cpu, cuda or cuda:N.

    Raises:
        OnnxModelError: another device (mps), or CUDA asked for but not in this onnxruntime.
    """
    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "auto":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = device.removeprefix("cuda").removeprefix(":")
    if device.startswith("cuda") and (index == "" or index.isdigit()):
        if not cuda:
            raise OnnxModelError(f"--device {device}: this onnxruntime has no CUDA provider; use --device cpu")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise OnnxModelError(f"--device {device}: an ONNX model runs on auto, cpu, cuda or cuda:N")


def normalize(image: np.ndarray, stats: dict[str, Any] | None) -> np.ndarray:
    """Float32 ``[C, H, W]`` of ``image`` ``[C, H, W]``: utils/data/normalization.normalize in numpy (meanstd
    ``(x - mean) / std``, percentile ``(x - low) / (high - low)``, a band of width under 1e-6 shifted only).

    Raises:
        DataError: the image's band count differs from the statistics'.
        ValueError: statistics of an unknown method.
    """
    image = image.astype(np.float32, copy=False)
    if stats is None:
        return image
    if stats.get("method") == "meanstd":
        shift, scale = stats["mean"], stats["std"]
    elif stats.get("method") == "percentile":
        shift, scale = stats["low"], [high - low for low, high in zip(stats["low"], stats["high"], strict=True)]
    else:
        raise ValueError(f"unknown normalisation statistics {stats!r}")
    if image.shape[0] != len(shift):
        raise DataError(f"image has {image.shape[0]} bands but the model's normalisation statistics {len(shift)}")
    shift_a = np.asarray(shift, dtype=np.float32).reshape(-1, 1, 1)
    scale_a = np.asarray([s if s >= _FLOOR else 1.0 for s in scale], dtype=np.float32).reshape(-1, 1, 1)
    return (image - shift_a) / scale_a


def pad_to_multiple(image: np.ndarray, divisor: int) -> np.ndarray:
    """``image`` ``[N, C, H, W]`` padded at the bottom and right to multiples of ``divisor``: reflect where the image
    is large enough, replicate (numpy's "edge") where not, as utils/tiling.pad_to_multiple."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    return np.pad(image, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=mode)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Starts of the windows along a side of ``size`` pixels: MONAI's scan interval ``int(window * (1 - overlap))``
    (at least 1; the window itself when it spans the side), the last window moved back to end at the side."""
    interval = window if window == size else max(int(window * (1 - overlap)), 1)
    count = next((d + 1 for d in range(math.ceil(size / interval)) if d * interval + window >= size), 1)
    return [min(d * interval, size - window) for d in range(count)]


def gaussian_map(height: int, width: int) -> np.ndarray:
    """Float32 ``[H, W]`` window weights: MONAI's compute_importance_map(mode="gaussian", sigma_scale=0.125), a
    separable Gaussian of sigma 0.125 x side centred on the window, clamped below at max(its minimum, 1e-3)."""
    axes = []
    for side in (height, width):
        x = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)[:side]
        axes.append(np.exp(x**2 / np.float32(-2 * (side * SIGMA_SCALE) ** 2)))
    weights = axes[0][:, None] * axes[1][None, :]
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


class OnnxPredictor:
    """An exported model in one onnxruntime session, with what its run was trained with (the metadata of
    utils/onnx_model.py: ``task``, ``classes``, ``channels``, ``divisor``, ``nodata``, ...)."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        """Open ``path`` on ``device`` (see :func:`providers`).

        Raises:
            OnnxModelError: onnxruntime cannot open the file, its metadata is not export.py's, or a bad device.
        """
        chosen = providers(device)
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=chosen)
        except Exception as err:  # pylint: disable=broad-exception-caught  # onnxruntime's errors share no base
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxModelError(f"{path}: onnxruntime cannot open it ({first})") from None
        try:
            self.metadata = read_metadata(self.session)
        except OnnxModelError as err:
            raise OnnxModelError(f"{path}: {err}") from None
        self.task: str = self.metadata["task"]
        self.channels = int(self.metadata["channels"])
        self.divisor = int(self.metadata["divisor"])

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An image as read ``[C, H, W]`` -> float32 ``[1, C, H, W]`` normalised with the run's statistics, pixels
        with a NaN, infinite or no-data band 0 after normalisation (NaN would spread through every window)."""
        invalid = ~np.isfinite(image)
        if self.metadata["nodata"] is not None:
            invalid |= image == self.metadata["nodata"]
        prepared = normalize(image, self.metadata["normalization"])
        invalid = invalid.any(0)
        if invalid.any():
            prepared = prepared.copy() if prepared is image else prepared
            prepared[:, invalid] = 0.0
        return prepared[None]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float32 logits ``[N, K, h, w]`` of ``batch`` ``[N, C, h, w]`` (sides multiples of the divisor)."""
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return logits

    def logits(self, image: np.ndarray, tile: int | None = 512, overlap: float = 0.25) -> np.ndarray:
        """Float32 logits ``[1, K, H, W]`` of a prepared image ``[1, C, H, W]``: :func:`sliding_window`."""
        return sliding_window(self.run, image, tile, overlap, self.divisor)


def sliding_window(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int | None = 512,
    overlap: float = 0.25,
    divisor: int = 1,
    batch: int = 4,
) -> np.ndarray:
    """Float32 logits ``[1, K, H, W]`` of ``image`` ``[1, C, H, W]`` by ``run`` (``[N, C, h, w]`` -> ``[N, K, h, w]``,
    sides multiples of ``divisor``), as utils/tiling.sliding_window: ``tile`` None or 0 (or a scene within one tile
    once padded): one pass; otherwise ``tile`` x ``tile`` windows (a smaller side of the scene: the side) overlapping
    by ``overlap``, ``batch`` at a time, blended with :func:`gaussian_map` weights and divided by their sum, as
    MONAI's sliding_window_inference does."""
    height, width = image.shape[-2:]
    padded = pad_to_multiple(image, divisor)
    size_h, size_w = padded.shape[-2:]
    if not tile or (size_h <= tile and size_w <= tile):
        return run(padded)[..., :height, :width]
    roi_h, roi_w = min(tile, size_h), min(tile, size_w)
    corners = [(y, x) for y in window_starts(size_h, roi_h, overlap) for x in window_starts(size_w, roi_w, overlap)]
    weights = gaussian_map(roi_h, roi_w)
    total, count = None, np.zeros((size_h, size_w), dtype=np.float32)
    for first in range(0, len(corners), batch):
        chunk = corners[first : first + batch]
        outputs = run(np.concatenate([padded[..., y : y + roi_h, x : x + roi_w] for y, x in chunk]))
        if total is None:
            total = np.zeros((1, outputs.shape[1], size_h, size_w), dtype=np.float32)
        for (y, x), output in zip(chunk, outputs, strict=True):
            total[0, :, y : y + roi_h, x : x + roi_w] += output * weights
            count[y : y + roi_h, x : x + roi_w] += weights
    return (total / count)[..., :height, :width]
