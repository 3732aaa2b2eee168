"""What a data set holds, measured on the samples that one pass reads: class pixels, objects, pixel values.

Training counts class pixels in the pass that computes its normalisation statistics (a ``ClassCounts`` is that
pass's ``on_sample``, utils/data/normalization.py) and warns of a rare class trained without a remedy
(``rare_class_line``); data_report.py runs the same pass with a ``Fingerprint`` (the counts, objects and pixel values)
and turns the figures into suggested config lines (``class_weights`` is the remedy it suggests: see docs/data.md,
"Rare classes", for the measurement behind it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

from utils.data.folder import sample_source
from utils.data.normalization import invalid_pixels
from utils.data.targets import MaskEncoder

__all__ = ["RARE_SHARE", "ClassCounts", "Fingerprint", "class_weights", "rare_class_line", "stored_dtype"]

RARE_SHARE = 0.05  # a class under this share of the labelled pixels is rare
PERCENTILES = (1.0, 50.0, 99.0)
_PIXELS_PER_IMAGE = 4096  # per band and image, kept for the percentiles: 1 M values over 256 images
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity: diagonal neighbours join
# PIL modes -> the dtype stored in the file (what read_image divides by: uint8 / 255, uint16 / 65535)
_PIL_DTYPES = {"1": "bool", "F": "float32", "I": "int32", **{m: "uint16" for m in ("I;16", "I;16L", "I;16B", "I;16N")}}


class ClassCounts:
    """Per class: the labelled pixels and the images without one, over the samples it is shown; with ``objects``,
    also each image's connected components per class (``scipy.ndimage.label``, 8-connected: a 1 px rim is one).

    Call it as ``counts(index, image [C, H, W], mask [M, H, W])`` with a raw sample of ``dataset``: the mask is
    encoded by ``encoder`` (DataError naming the file for a mask that does not fit it). Multiclass counts every
    class; binary and multilabel count their CLASSES (the foreground, one per channel). IGNORE pixels count nowhere.
    """

    def __init__(self, encoder: MaskEncoder, dataset: Dataset, objects: bool = False) -> None:
        self.encoder, self.dataset, self.objects = encoder, dataset, objects
        classes = encoder.num_classes if encoder.task != "binary" else 1
        self.pixels = np.zeros(classes, dtype=np.int64)
        self.absent = np.zeros(classes, dtype=np.int64)
        self.per_image: list[list[int]] = [[] for _ in range(classes)]
        self.valid = self.images = 0

    def __call__(self, index: int, image: Any, mask: Any) -> None:  # pylint: disable=unused-argument
        target = self.encoder(torch.as_tensor(mask), sample_source(self.dataset, index))
        valid = target[0] >= 0
        if self.encoder.task == "multiclass":
            planes = torch.stack([target[0] == c for c in range(len(self.pixels))])
        else:
            planes = target == 1  # binary [1, H, W], multilabel [K, H, W]
        counts = planes.reshape(len(planes), -1).sum(1).numpy()
        self.pixels += counts
        self.absent += counts == 0
        self.valid += int(valid.sum())
        self.images += 1
        if self.objects:
            for c, plane in enumerate(planes.numpy()):
                self.per_image[c].append(ndimage.label(plane, structure=_EIGHT)[1])

    def shares(self) -> np.ndarray:
        """Each class's share of the labelled (not ignored) pixels, [K] in [0, 1] (zeros before any pixel)."""
        return self.pixels / max(self.valid, 1)


def class_weights(shares: Sequence[float], task: str, rare: float = RARE_SHARE) -> list[float] | None:
    """LOSS_CONFIG class_weights for ``shares`` (of the pixels, per class), None when no class is under ``rare``.

    The square root of the inverse share, relative to the commonest class's (multiclass: one weight per class) or
    to the class's own negative pixels (binary, multilabel: the weight of the positive pixels, ``(1 - s) / s``),
    rounded to 0.1, at most 10: a class at 3 % beside one at 70 % weighs 4.8. A class never seen weighs 1.
    """
    shares = np.asarray(shares, dtype=np.float64)
    if not ((shares > 0) & (shares < rare)).any():
        return None
    seen = np.where(shares > 0, shares, np.nan)
    ratio = np.nanmax(seen) / seen if task == "multiclass" else (1 - seen) / seen
    return np.round(np.clip(np.sqrt(np.nan_to_num(ratio, nan=1.0)), 1.0, 10.0), 1).tolist()


def _remedied(config: dict[str, Any], index: int) -> bool:
    """Whether the config gives class ``index`` a remedy: a class weight above the lightest class's (binary,
    multilabel: above 1), or patches centred on labelled pixels (PATCH_FOREGROUND; not for multiclass background)."""
    weights = (config.get("LOSS_CONFIG") or {}).get("class_weights")
    if weights is not None:
        weights = [float(w) for w in np.asarray(weights, dtype=np.float64).reshape(-1)]
        if index < len(weights) and weights[index] > (min(weights) if config["TASK"] == "multiclass" else 1.0):
            return True
    background = config["TASK"] == "multiclass" and index == 0
    return bool(config.get("PATCH_SIZE") and config.get("PATCH_FOREGROUND", 0) > 0 and not background)


def rare_class_line(counts: ClassCounts, config: dict[str, Any]) -> str | None:
    """One line naming the classes under RARE_SHARE of the counted pixels that the config trains without a remedy
    (see :func:`_remedied`), with the class weights to set; None when there is none."""
    shares = counts.shares()
    names = list(config["CLASSES"])[-len(shares) :]  # binary: CLASSES names the foreground (or both classes)
    rare = [c for c, share in enumerate(shares) if 0 < share < RARE_SHARE and not _remedied(config, c)]
    if not rare:
        return None
    found = ", ".join(f"{names[c]!r} is {100 * shares[c]:.1f} %" for c in rare)
    return (
        f"rare class: {found} of the labelled pixels of {counts.images} training images (the normalisation's sample) "
        f"and trains without a remedy: set LOSS_CONFIG class_weights, e.g. {class_weights(shares, config['TASK'])} "
        "(python data_report.py suggests it; docs/data.md, 'Rare classes')"
    )


def stored_dtype(path: str | Path) -> str:
    """The dtype of an image file's samples, from its header (PIL mode, TIFF series, .npy memory map)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return str(np.load(path, mmap_mode="r", allow_pickle=False).dtype)
    if suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            return str(tif.series[0].dtype)
    with Image.open(path) as img:
        return _PIL_DTYPES.get(img.mode, "uint8")


class Fingerprint(ClassCounts):
    """:class:`ClassCounts` with objects, plus what the images hold: bands, sizes, per-band values (a random
    ``_PIXELS_PER_IMAGE`` of each image's valid pixels per band, for percentiles), no-data pixels and mask values."""

    def __init__(self, encoder: MaskEncoder, dataset: Dataset, nodata: float | None, seed: int = 0) -> None:
        super().__init__(encoder, dataset, objects=True)
        self.nodata, self.rng = nodata, np.random.default_rng(seed)
        self.bands: set[int] = set()
        self.sizes: list[tuple[int, int]] = []
        self.values: list[list[np.ndarray]] = []
        self.low: list[float] = []
        self.high: list[float] = []
        self.invalid = self.pixels_read = 0
        self.mask_values: set = set()

    def __call__(self, index: int, image: Any, mask: Any) -> None:
        super().__call__(index, image, mask)
        image, mask = torch.as_tensor(image, dtype=torch.float32), torch.as_tensor(mask)
        bad = invalid_pixels(image, self.nodata)
        self.invalid += int(bad.sum())
        self.pixels_read += bad.numel()
        self.bands.add(image.shape[0])
        self.sizes.append(tuple(image.shape[-2:]))
        flat = mask.reshape(mask.shape[0], -1)
        self.mask_values.update(map(tuple, flat.unique(dim=1).T.tolist()) if len(flat) > 1 else flat.unique().tolist())
        for band, values in enumerate(image.reshape(image.shape[0], -1).numpy()):
            values = values[~bad.reshape(-1).numpy()]
            if band >= len(self.values):
                self.values.append([])
                self.low.append(np.inf)
                self.high.append(-np.inf)
            if values.size:
                self.low[band], self.high[band] = min(self.low[band], values.min()), max(self.high[band], values.max())
                take = self.rng.integers(0, values.size, min(values.size, _PIXELS_PER_IMAGE))
                self.values[band].append(values[take])

    def band_percentiles(self) -> list[list[float]]:
        """Per band: min, the PERCENTILES (of the sampled values) and max (of every pixel read)."""
        return [
            [self.low[b], *np.percentile(np.concatenate(v), PERCENTILES).tolist(), self.high[b]] if v else []
            for b, v in enumerate(self.values)
        ]
