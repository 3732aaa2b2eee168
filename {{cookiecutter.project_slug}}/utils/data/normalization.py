"""Per-band intensity statistics of a training set, and the normalisation they define.

Images arrive as read (uint8 / 255, uint16 / 65535, floats as they are), so a 16-bit file holding 12-bit data gives
values up to 0.06, and float rasters may hold NaN or a no-data value. ``compute_statistics`` measures each band over
the valid pixels (finite and != NODATA) of up to ``max_samples`` training images; ``normalize`` applies the result.
The statistics dict is plain JSON-able data: it goes into the checkpoint, so predict and evaluate apply exactly what
training did.

- "meanstd": ``(x - mean) / std`` per band.
- "percentile": ``(x - p1) / (p99 - p1)`` per band, the 1st and 99th percentiles: Cellpose's default normalisation
  (``normalize99``; Stringer et al., "Cellpose: a generalist algorithm for cellular segmentation", Nature Methods
  18, 100-106, 2021), robust to a few saturated or dead pixels that would dominate min/max or inflate std.

A range of zero width is never divided by an epsilon: a band whose 1st and 99th percentiles are equal (a sparse
channel: most pixels 0) takes its minimum and maximum as its range instead; a band that is constant in the images
used (std 0, or no range left) is only shifted, not scaled. Each is one warning line when the statistics are made.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.folder import dataset_name, sample_source
from utils.data.images import DataError

__all__ = ["METHODS", "PERCENTILES", "compute_statistics", "invalid_pixels", "normalize"]

METHODS = ("meanstd", "percentile")
PERCENTILES = (1.0, 99.0)
_FLOOR = 1e-6  # a scale (std, p99 - p1) under this is no width: the band is shifted only (scale 1)
LOGGER = logging.getLogger("project")
# Percentiles need the values themselves; this many per band over all images bounds memory (2 MiB per band in
# float64) while estimating the 1st/99th percentile to well under a grey level of a 12-bit image.
_PERCENTILE_PIXELS = 1 << 18


def invalid_pixels(image: torch.Tensor, nodata: float | None = None) -> torch.Tensor:
    """Bool ``[H, W]``: pixels where any band of ``image`` ``[C, H, W]`` is NaN, infinite or equal to ``nodata``."""
    bad = ~torch.isfinite(image)
    if nodata is not None:
        bad |= image == nodata
    return bad.any(0)


def compute_statistics(
    dataset: Dataset,
    method: str | None,
    nodata: float | None = None,
    max_samples: int = 256,
    seed: int = 0,
    on_sample: Callable[[int, Any, Any], None] | None = None,
) -> dict[str, Any] | None:
    """Per-band statistics of the images of ``dataset`` (samples ``(image [C, H, W], mask)``).

    Args:
        dataset: the training set, images as read (not normalised).
        method: "meanstd", "percentile" or None (no normalisation: returns None).
        nodata: an image value meaning no data; such pixels (and NaN/inf ones) are left out, band by band.
        max_samples: images used at most; with more, a seeded random choice of this many.
        seed: seed of that choice and of the pixel subsample for percentiles.
        on_sample: called as ``on_sample(index, image, mask)`` with each sample read, so that other figures (the
            class pixels of utils/data/fingerprint.py) come from the same pass; with it, method None still reads.

    Returns:
        ``{"method": "meanstd", "mean": [C], "std": [C]}`` (population std), ``{"method": "percentile",
        "low": [C], "high": [C], "percentiles": [1.0, 99.0]}``, or None; lists of Python floats.

    Raises:
        ValueError: an unknown method, or max_samples < 1.
        DataError: an empty dataset, images with different band counts, or a band without one valid pixel.
    """
    if method is None and on_sample is None:
        return None
    if method is not None and method not in METHODS:
        raise ValueError(f"NORMALIZATION must be one of {', '.join(METHODS)} or None, got {method!r}")
    rng = np.random.default_rng(seed)
    indices = _sample_indices(dataset, max_samples, rng)
    per_image = -(-_PERCENTILE_PIXELS // len(indices))  # ceil
    bands: int | None = None
    moments: np.ndarray | None = None  # [C, 3]: count, mean, M2 (Chan et al.'s parallel variance)
    kept: list[list[np.ndarray]] = []  # percentile: per band, the subsampled valid values of each image
    if method is None:  # only on_sample's figures
        collections.deque(_read(dataset, indices, on_sample), maxlen=0)
        return None
    for index, image in _read(dataset, indices, on_sample):
        image = torch.as_tensor(image).numpy().astype(np.float64)
        image = image.reshape(image.shape[0], -1)  # [C, H*W]
        if bands is None:
            bands, moments, kept = image.shape[0], np.zeros((image.shape[0], 3)), [[] for _ in range(image.shape[0])]
        elif image.shape[0] != bands:
            raise DataError(
                f"{sample_source(dataset, index, 'image')} has {image.shape[0]} bands, earlier ones {bands}: "
                "set DATASET_CONFIG.channels"
            )
        for band, values in enumerate(_valid(image, nodata)):
            if method == "meanstd":
                moments[band] = _merge(moments[band], values)
            elif values.size:
                take = values if values.size <= per_image else values[rng.integers(0, values.size, per_image)]
                kept[band].append(take)
    empty = [band for band in range(bands) if (moments[band, 0] if method == "meanstd" else len(kept[band])) == 0]
    if empty:
        raise DataError(
            f"band {empty[0]} has no valid pixel (all NaN/inf"
            + (f" or NODATA={nodata}" if nodata is not None else "")
            + f") in the {len(indices)} images used from {dataset_name(dataset)}: "
            "check NODATA and DATASET_CONFIG.channels"
        )
    if method == "meanstd":
        std = np.sqrt(moments[:, 2] / moments[:, 0])
        stats = {"method": method, "mean": moments[:, 1].tolist(), "std": std.tolist()}
    else:
        ranges = [_percentile_range(band, np.concatenate(values)) for band, values in enumerate(kept)]
        low, high = zip(*ranges, strict=True)
        stats = {"method": method, "low": list(low), "high": list(high), "percentiles": list(PERCENTILES)}
    _warn_constant(stats, len(indices))
    return stats


def _percentile_range(band: int, values: np.ndarray) -> tuple[float, float]:
    """The 1st and 99th percentiles of ``values``; their minimum and maximum where those percentiles are equal."""
    low, high = np.percentile(values, PERCENTILES).tolist()
    if high - low < _FLOOR <= values.max() - values.min():  # over 98 % of the pixels hold one value
        LOGGER.warning(
            "NORMALIZATION 'percentile': band %d has its 1st and 99th percentiles at %.6g (one value in over "
            "98 %% of its pixels): its range is taken from its minimum to its maximum, %.6g to %.6g",
            band, low, values.min(), values.max(),
        )  # fmt: skip
        return float(values.min()), float(values.max())
    return low, high


def _warn_constant(stats: dict[str, Any], images: int) -> None:
    """One warning line per band of zero width in ``stats``: normalize only shifts it (no division by an epsilon)."""
    for band, (shift, scale) in enumerate(zip(*_shift_and_scale(stats), strict=True)):
        if scale < _FLOOR:
            LOGGER.warning(
                "NORMALIZATION %r: band %d is constant (%.6g) in the %d training image(s) used: it is shifted by that "
                "value, not scaled (an alpha channel, an empty band? it tells the model nothing here)",
                stats["method"], band, shift, images,
            )  # fmt: skip


def _read(dataset: Dataset, indices: list[int], on_sample: Callable | None) -> Iterator[tuple[int, Any]]:
    """``(index, image)`` of each sample read, the whole sample handed to ``on_sample`` first."""
    for index in indices:
        image, mask = dataset[index]
        if on_sample is not None:
            on_sample(index, image, mask)
        yield index, image


def _sample_indices(dataset: Dataset, max_samples: int, rng: np.random.Generator) -> list[int]:
    """All indices of ``dataset``, or a sorted random choice of ``max_samples`` of them."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples!r}")
    if len(dataset) == 0:
        raise DataError(f"cannot compute normalisation statistics: {dataset_name(dataset)} is empty")
    if len(dataset) <= max_samples:
        return list(range(len(dataset)))
    return sorted(rng.choice(len(dataset), size=max_samples, replace=False).tolist())


def _valid(image: np.ndarray, nodata: float | None) -> list[np.ndarray]:
    """The valid (finite, != nodata) values of each band of ``image`` ``[C, H*W]``."""
    valid = np.isfinite(image)
    if nodata is not None:
        valid &= image != nodata
    return [values[keep] for values, keep in zip(image, valid, strict=True)]


def _merge(moments: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running (count, mean, M2) merged with a batch of values, exact in float64 even when mean >> std."""
    if values.size == 0:
        return moments
    count, mean = values.size, values.mean()
    m2 = np.square(values - mean).sum()
    total = moments[0] + count
    delta = mean - moments[1]
    return np.array(
        [total, moments[1] + delta * count / total, moments[2] + m2 + delta**2 * moments[0] * count / total]
    )


def normalize(image: torch.Tensor, stats: dict[str, Any] | None) -> torch.Tensor:
    """``image`` ``[C, H, W]`` or ``[N, C, H, W]`` normalised band by band with ``stats`` from compute_statistics.

    Returns a new float32 tensor (meanstd: ``(x - mean) / std``; percentile: ``(x - low) / (high - low)``, so the
    1st-99th percentile range maps to 0..1; a band whose std or range is under 1e-6 is shifted only, ``x - mean`` or
    ``x - low``); ``image`` itself when stats is None. NaN stays NaN. Raises DataError when the image's band count
    differs from the statistics'.
    """
    if stats is None:
        return image
    shift, scale = _shift_and_scale(stats)
    bands = image.shape[-3]
    if bands != len(shift):
        raise DataError(
            f"image has {bands} bands but the normalisation statistics {len(shift)}: the statistics come from "
            "another data set (NORMALIZATION 'init': set 'meanstd' to compute this data's own) or "
            "DATASET_CONFIG.channels changed"
        )
    shift_t = torch.tensor(shift, dtype=torch.float32, device=image.device).reshape(bands, 1, 1)
    scale = [value if value >= _FLOOR else 1.0 for value in scale]  # a band of zero width: shifted only
    scale_t = torch.tensor(scale, dtype=torch.float32, device=image.device).reshape(bands, 1, 1)
    return (image.to(torch.float32) - shift_t) / scale_t


def _shift_and_scale(stats: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per band, what ``stats`` subtracts and what it divides by (before a zero width is replaced by 1)."""
    if stats.get("method") == "meanstd":
        return stats["mean"], stats["std"]
    if stats.get("method") == "percentile":
        return stats["low"], [high - low for low, high in zip(stats["low"], stats["high"], strict=True)]
    raise ValueError(f"unknown normalisation statistics {stats!r}")
