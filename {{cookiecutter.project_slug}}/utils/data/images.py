"""Read one image or mask file: PNG, JPEG and .npy, as float32 arrays ``[C, H, W]``.

``read_image`` scales to [0, 1]; ``read_mask`` gives 0/1 foreground. A file that cannot be read raises DataError
naming the file.
"""

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".npy")

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


def image_size(path: Path, kind: str) -> tuple[int, int]:
    """Height and width of an image file from its header only (PIL opens lazily; .npy is memory-mapped)."""
    try:
        if path.suffix.lower() == ".npy":
            return _npy_hw(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        with Image.open(path) as img:
            width, height = img.size
            return height, width
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {kind} {path}: {exc}") from exc
