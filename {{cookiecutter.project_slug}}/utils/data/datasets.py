"""Segmentation datasets: synthetic shapes (default, offline) and image/mask folders.

Every dataset returns ``(image, mask)``: ``image`` a float32 tensor ``[C, H, W]`` in ``[0, 1]`` and ``mask`` a
float32 tensor ``[1, H, W]`` holding 0 or 1. A ``transform(image, mask) -> (image, mask)`` (see
``utils.data.transforms``) is applied last when given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "PairTransform",
    "SegmentationFolder",
    "SyntheticShapes",
    "read_image",
    "read_mask",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".npy")

PairTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Everything PIL and numpy raise for a missing, corrupt or truncated file. UnidentifiedImageError is an OSError;
# numpy raises ValueError for a bad header or a pickled array, EOFError for an empty file; PIL raises SyntaxError
# for some malformed headers and DecompressionBombError (not an OSError) for absurd sizes.
_READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)

# PIL modes holding 16-bit samples; convert("L") would clip them, so they are scaled by hand.
_PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# ITU-R 601-2 luma weights, the ones PIL's convert("L") uses, so .npy and PNG inputs agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class DataError(ValueError):
    """Bad input data (missing, unpaired, unreadable or mis-sized files); the message names the offending path."""


# --------------------------------------------------------------------------------------------------------------
# Reading single files
# --------------------------------------------------------------------------------------------------------------


def _scale(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as float32 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1, floats unchanged."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    # Other integer types have no agreed full scale; guessing one would silently rescale the data.
    raise ValueError(f"unsupported dtype {array.dtype} (use uint8, uint16, bool or float)")


def _npy_layout(shape: tuple[int, ...]) -> str:
    """Return "HW", "HWC" or "CHW" for the shape of an array stored in a .npy file."""
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3:
        # A leading 1 or 3 with a trailing size that cannot be channels is channels-first (CxHxW);
        # everything else with 1, 3 or 4 trailing values is channels-last, the layout PIL and most tools write.
        if shape[0] in (1, 3) and shape[2] not in (1, 3, 4):
            return "CHW"
        if shape[2] in (1, 3, 4):
            return "HWC"
    raise ValueError(f"array of shape {shape} is not HxW, HxWxC or CxHxW with C in (1, 3)")


def _npy_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """Height and width of an array stored in a .npy file, from its shape alone."""
    layout = _npy_layout(shape)
    if layout == "CHW":
        return shape[1], shape[2]
    return shape[0], shape[1]


def _to_chw(array: np.ndarray) -> np.ndarray:
    """Reorder a 2-D or 3-D array to [C, H, W]."""
    layout = _npy_layout(array.shape)
    if layout == "HW":
        return array[None]
    if layout == "HWC":
        return np.moveaxis(array, -1, 0)
    return array


def _set_channels(chw: np.ndarray, channels: int) -> np.ndarray:
    """Return ``chw`` with exactly ``channels`` channels (gray is repeated, colour is turned into luma)."""
    if chw.shape[0] == 4:  # RGBA: the alpha channel is not image content
        chw = chw[:3]
    if chw.shape[0] == channels:
        return chw
    if channels == 3:  # gray -> RGB
        return np.repeat(chw, 3, axis=0)
    return np.tensordot(_LUMA, chw, axes=1)[None].astype(np.float32)


def _load_pil(path: Path, channels: int) -> np.ndarray:
    """Decode a PNG/JPEG into float32 [C, H, W] in [0, 1]."""
    with Image.open(path) as img:
        img.load()  # decode now, inside the caller's error handling, so truncated files fail here
        if img.mode in _PIL_16BIT_MODES:
            chw = (np.asarray(img).astype(np.float32) / 65535.0)[None]
            return np.clip(_set_channels(chw, channels), 0.0, 1.0)
        if img.mode == "F":
            return _set_channels(np.asarray(img, dtype=np.float32)[None], channels)
        rgb_or_gray = img.convert("L" if channels == 1 else "RGB")
        return _to_chw(_scale(np.asarray(rgb_or_gray)))


def read_image(path: str | Path, channels: int = 1) -> np.ndarray:
    """Read a PNG, JPEG or .npy image as float32 ``[channels, H, W]`` scaled to [0, 1].

    uint8 data is divided by 255 and uint16 by 65535; float .npy arrays are kept as they are. A .npy array may be
    HxW, HxWxC or CxHxW with C in (1, 3). Gray inputs are repeated to 3 channels and colour inputs are reduced to
    luma when ``channels`` asks for it.

    Raises:
        DataError: ``cannot read image <path>: <reason>`` for a missing, corrupt, truncated or unsupported file.
    """
    path = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            image = _set_channels(_to_chw(_scale(array)), channels)
        else:
            image = _load_pil(path, channels)
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return np.ascontiguousarray(image, dtype=np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG or .npy mask as float32 ``[1, H, W]`` holding 0 or 1 (any value > 0 becomes 1).

    Colour masks count a pixel as foreground when any channel is non-zero.

    Raises:
        DataError: ``cannot read mask <path>: <reason>`` for a missing, corrupt, truncated or unsupported file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            array = _to_chw(np.load(path, allow_pickle=False))
        else:
            with Image.open(path) as img:
                img.load()
                # Alpha is transparency, not label: with it a colour mask would be all foreground.
                if img.mode not in ("1", "L", "P", "F", *_PIL_16BIT_MODES):
                    img = img.convert("RGB")
                array = _to_chw(np.asarray(img))
        if array.shape[0] == 4:  # RGBA .npy: same reason
            array = array[:3]
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"unsupported dtype {array.dtype}")
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read mask {path}: {exc}") from exc
    return np.ascontiguousarray((array > 0).any(axis=0, keepdims=True), dtype=np.float32)


def _image_hw(path: Path, kind: str) -> tuple[int, int]:
    """Height and width of an image file from its header only (PIL opens lazily; .npy is memory-mapped)."""
    try:
        if path.suffix.lower() == ".npy":
            return _npy_hw(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        with Image.open(path) as img:
            width, height = img.size
            return height, width
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {kind} {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------------------------
# Synthetic shapes
# --------------------------------------------------------------------------------------------------------------


def _shape_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """One random filled circle, rectangle or triangle, as a boolean [size, size] mask."""
    radius = rng.uniform(0.08, 0.22) * size
    # Keep the whole shape inside the image so the mask is never empty.
    cy, cx = rng.uniform(radius, size - 1 - radius, size=2)
    kind = rng.integers(3)
    if kind == 0:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    if kind == 1:
        half_h, half_w = rng.uniform(0.5, 1.0, size=2) * radius
        return (np.abs(yy - cy) <= half_h) & (np.abs(xx - cx) <= half_w)
    # Triangle: three vertices on the circle, spread enough apart that it is never a sliver.
    angles = rng.uniform(0, 2 * math.pi) + np.arange(3) * (2 * math.pi / 3) + rng.uniform(-0.4, 0.4, size=3)
    vy, vx = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    # Edge functions: a point is inside when it lies on the same side of all three (counter-)clockwise edges.
    edges = [(vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]) for i, j in ((0, 1), (1, 2), (2, 0))]
    return ((edges[0] >= 0) & (edges[1] >= 0) & (edges[2] >= 0)) | ((edges[0] <= 0) & (edges[1] <= 0) & (edges[2] <= 0))


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, channels: int) -> np.ndarray:
    """A smooth float32 [channels, H, W] background in [0, 0.35]: a linear ramp in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * xx + math.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    # Offset and slope per channel, so colour backgrounds get a colour cast too.
    low = rng.uniform(0.0, 0.15, size=(channels, 1, 1)).astype(np.float32)
    amplitude = rng.uniform(0.0, 0.2, size=(channels, 1, 1)).astype(np.float32)
    return low + amplitude * ramp


class SyntheticShapes(Dataset):
    """Random filled circles, rectangles and triangles on a smooth background: a segmentation task needing no files.

    Sample ``i`` is drawn from ``np.random.default_rng([seed, i])``, so it is the same on every call, in every
    worker process and for every instance with the same arguments, and different for another seed.
    Each image holds 1..``max_shapes`` shapes of intensity 0.6..1 on a linear gradient background of 0..0.35, with
    gaussian noise of standard deviation ``noise``, clipped to [0, 1]; the mask is the union of the shapes.

    Args:
        n_samples: number of samples (``len(dataset)``).
        size: height and width of the square images.
        channels: 1 (gray) or 3 (colour: shapes and background get a random colour each).
        max_shapes: largest number of shapes in one image.
        noise: standard deviation of the additive gaussian noise.
        seed: base seed; non-negative.
        transform: optional paired ``transform(image, mask) -> (image, mask)``.
    """

    def __init__(
        self,
        n_samples: int = 512,
        size: int = 64,
        channels: int = 1,
        max_shapes: int = 3,
        noise: float = 0.1,
        seed: int = 0,
        transform: PairTransform | None = None,
    ) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.n_samples = int(n_samples)
        self.size = int(size)
        self.channels = int(channels)
        self.max_shapes = int(max_shapes)
        self.noise = float(noise)
        self.seed = int(seed)
        self.transform = transform

    def __len__(self) -> int:
        return self.n_samples

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return sample ``index`` as numpy arrays: image float32 [C, S, S] and mask float32 [1, S, S]."""
        rng = np.random.default_rng([self.seed, index])
        size, channels = self.size, self.channels
        # Row and column coordinates, broadcast against each other instead of building full meshgrids.
        coords = np.arange(size, dtype=np.float32)
        yy, xx = coords[:, None], coords[None, :]

        image = _background(rng, yy, xx, channels)
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            shape = _shape_mask(rng, yy, xx, size)
            # Shapes stay at least 0.25 (2.5 noise sd) brighter than the background so the task is learnable.
            intensity = rng.uniform(0.6, 1.0, size=(channels, 1)).astype(np.float32)
            image[:, shape] = intensity
            mask |= shape

        image += rng.normal(0.0, self.noise, size=image.shape).astype(np.float32)
        np.clip(image, 0.0, 1.0, out=image)
        return image.astype(np.float32, copy=False), mask[None].astype(np.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(index)  # numpy and 0-d tensor indices too; the rng seed needs a plain int
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        image, mask = self.generate(index % self.n_samples)
        image_t, mask_t = torch.from_numpy(image), torch.from_numpy(mask)
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t)
        return image_t, mask_t

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_samples={self.n_samples}, size={self.size}, channels={self.channels}, "
            f"max_shapes={self.max_shapes}, noise={self.noise}, seed={self.seed})"
        )


# --------------------------------------------------------------------------------------------------------------
# Image/mask folders
# --------------------------------------------------------------------------------------------------------------


def _files_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stem -> path for the image files in ``folder``; refuse an empty folder and duplicate stems."""
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        # Other files (README, .gitkeep, thumbnails) are skipped rather than refused: folders often hold them.
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in by_stem:
            raise DataError(f"two files with the same stem in {folder}: {by_stem[path.stem].name} and {path.name}")
        by_stem[path.stem] = path
    if not by_stem:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return by_stem


class SegmentationFolder(Dataset):
    """Image/mask pairs from ``root/<image_dir>`` and ``root/<mask_dir>``, matched by file stem.

    ``images/cat.jpg`` pairs with ``masks/cat.png``; files may be PNG, JPEG or .npy (any case of extension). Pairs
    are sorted by stem and exposed as ``.pairs``. Everything that can be checked from file headers is checked
    here, so a bad folder fails before training starts rather than in the middle of an epoch.

    Args:
        root: dataset folder.
        image_dir: sub-folder of ``root`` holding the images.
        mask_dir: sub-folder of ``root`` holding the masks (any value > 0 is foreground).
        channels: channels of the returned images, 1 or 3.
        transform: optional paired ``transform(image, mask) -> (image, mask)``.

    Raises:
        DataError: missing root or sub-folder, an empty sub-folder, an image without a mask or a mask without an
            image, two files with one stem in one folder, an image and mask of different sizes, or a file whose
            header cannot be read. Files that only fail to decode raise DataError when they are loaded.
    """

    def __init__(
        self,
        root: str | Path,
        image_dir: str = "images",
        mask_dir: str = "masks",
        channels: int = 1,
        transform: PairTransform | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.root = Path(root)
        self.channels = int(channels)
        self.transform = transform
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        images = _files_by_stem(self.root / image_dir)
        masks = _files_by_stem(self.root / mask_dir)

        for stem, path in images.items():
            if stem not in masks:
                raise DataError(f"image {path} has no mask named {stem}.* in {self.root / mask_dir}")
        for stem, path in masks.items():
            if stem not in images:
                raise DataError(f"mask {path} has no image named {stem}.* in {self.root / image_dir}")

        self.pairs: list[tuple[Path, Path]] = [(images[stem], masks[stem]) for stem in sorted(images)]
        for image_path, mask_path in self.pairs:
            image_hw, mask_hw = _image_hw(image_path, "image"), _image_hw(mask_path, "mask")
            if image_hw != mask_hw:
                raise DataError(
                    f"size mismatch: image {image_path} is {image_hw[0]}x{image_hw[1]} (HxW) "
                    f"but mask {mask_path} is {mask_hw[0]}x{mask_hw[1]}"
                )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path, self.channels), read_mask(mask_path)
        # Headers were checked at init, but a header can lie (e.g. a .npy rewritten since); keep the pair honest.
        if image.shape[1:] != mask.shape[1:]:
            raise DataError(
                f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[2]} (HxW) "
                f"but mask {mask_path} is {mask.shape[1]}x{mask.shape[2]}"
            )
        image_t, mask_t = torch.from_numpy(image), torch.from_numpy(mask)
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t)
        return image_t, mask_t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, pairs={len(self.pairs)}, channels={self.channels})"
