"""Read one image or mask file (PNG, JPEG, TIFF or .npy) as an array ``[bands, H, W]``, any number of bands.

``read_image`` gives float32 (uint8 / 255, uint16 / 65535, floats and NaN as stored); ``read_mask`` gives the raw
values (int64 or float32) for utils/data/targets.py to encode. A file that cannot be read raises DataError naming it.
"""

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
_TIFF_EXTENSIONS = (".tif", ".tiff")
# TIFF extra samples dropped: associated (premultiplied) alpha, which is transparency. Unassociated alpha is kept as a
# band: tifffile and GDAL write a fourth band (RGB + near infrared) that way unless told photometric="minisblack".
_ALPHA = (tifffile.EXTRASAMPLE.ASSOCALPHA,)
# What PIL, numpy and tifffile raise for a missing, corrupt or truncated file: PIL OSError (UnidentifiedImageError),
# SyntaxError, DecompressionBombError; numpy ValueError, EOFError; tifffile TiffFileError, ValueError (short strips).
_READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError, tifffile.TiffFileError)
# PIL modes holding 16-bit samples; convert("L") would clip them, so they are scaled by hand.
_PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# PIL modes whose values a mask keeps as they are (palette "P": the indices, not the colours).
_PIL_MASK_MODES = ("1", "L", "P", "F", "RGB", *_PIL_16BIT_MODES)
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}
# ITU-R 601-2 luma weights, the ones PIL's convert("L") uses, so .npy, TIFF and PNG inputs agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Formats whose compression changes pixel values, so that a mask in one no longer holds its labels near edges
# (utils/data/targets.py refuses them unless MASK_THRESHOLD says how to read them). PIL names the content's format:
# a JPEG renamed .png is still one. WebP files are not read at all (IMAGE_EXTENSIONS).
_LOSSY_PIL = {"JPEG": "JPEG", "MPO": "JPEG"}
_LOSSY_TIFF = {tifffile.COMPRESSION[name] for name in ("OJPEG", "JPEG", "JPEG_LOSSY", "JPEG_2000_LOSSY", "WEBP")}


# tifffile logs a warning of its own for a damaged file before it raises; the one line that names the file is ours.
logging.getLogger("tifffile").setLevel(logging.ERROR)


class DataError(ValueError):
    """Bad input data (missing, unpaired, unreadable or mis-sized files); the message names the offending path."""


def _scale(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as float32: uint8 / 255, uint16 / 65535, bool as 0/1, floats unchanged (NaN kept)."""
    if array.dtype in _FULL_SCALE:
        return array.astype(np.float32) / _FULL_SCALE[array.dtype]
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    # Other integer types have no agreed full scale; guessing one would silently rescale the data.
    raise ValueError(
        f"unsupported dtype {array.dtype} (use uint8, uint16, bool or float32 with the values as they are)"
    )


def _npy_chw(array: np.ndarray) -> np.ndarray:
    """A .npy array (or memory map) as a [bands, H, W] view: HxW, or 3-D with the smaller of the first and last
    sizes as bands; a tie is HxWxC, the layout PIL and most tools write (bands are fewer than rows in practice)."""
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array if array.shape[0] < array.shape[2] else np.moveaxis(array, -1, 0)
    raise ValueError(f"array of shape {array.shape} is not HxW, HxWxC or CxHxW")


def _tiff_series(tif: tifffile.TiffFile) -> list:
    """The first series and every later one alike in shape, axes and dtype (pages written one by one are bands);
    reduced-resolution pages (previews, overviews) are left out, any other page of another size or type refused."""
    if not tif.series:
        raise ValueError("no image in the TIFF file")
    first = tif.series[0]
    if "Y" not in first.axes or "X" not in first.axes:
        raise ValueError(f"TIFF series of axes {first.axes} has no rows (Y) and columns (X)")
    alike = [s for s in tif.series if (s.shape, s.axes, s.dtype) == (first.shape, first.axes, first.dtype)]
    other = next((s for s in tif.series if s not in alike and not s.keyframe.is_reduced), None)
    if other is not None:
        raise ValueError(
            f"its pages differ ({first.shape} {first.dtype} and {other.shape} {other.dtype}): "
            "one image per file, its bands as pages of one size and type"
        )
    return alike


def _tiff_chw(path: Path) -> np.ndarray:
    """Decode a TIFF as [bands, H, W] in its own dtype; every axis but Y and X (S, C, Q, I, Z...) counts as bands.

    'YXS' (multi-sample), 'SYX' (planar), 'CYX'/'QYX'/'IYX' (multi-page) all give bands first; extra samples marked
    as associated alpha are dropped. (tifffile.imwrite of an HxWxC array with C not 3/4 writes H pages: pass
    photometric="minisblack", planarconfig="contig", or write CxHxW.)
    """
    with tifffile.TiffFile(path) as tif:
        bands = []
        for series in _tiff_series(tif):
            array, axes, extra = series.asarray(), series.axes, tuple(series.keyframe.extrasamples)
            if "S" in axes and any(e in _ALPHA for e in extra):
                base = array.shape[axes.index("S")] - len(extra)  # 1 for grey, 3 for RGB
                keep = [*range(base), *(base + i for i, e in enumerate(extra) if e not in _ALPHA)]
                array = np.take(array, keep, axis=axes.index("S"))
            array = np.moveaxis(array, [axes.index("Y"), axes.index("X")], [-2, -1])
            bands.append(array.reshape(-1, *array.shape[-2:]))
    return np.concatenate(bands) if len(bands) > 1 else bands[0]


def _set_channels(chw: np.ndarray, channels: int | None, path: Path, expected_by: str | None = None) -> np.ndarray:
    """``chw`` with ``channels`` bands: None keeps them; 1 -> 3 repeats grey, 3 -> 1 takes luma; else DataError."""
    bands = chw.shape[0]
    if channels is None or bands == channels:
        return chw
    if bands == 1 and channels == 3:
        return np.repeat(chw, 3, axis=0)
    if bands == 3 and channels == 1:
        return np.tensordot(_LUMA, chw, axes=1)[None].astype(np.float32)
    if expected_by is not None:  # a trained model: its bands are fixed
        raise DataError(
            f"image {path} has {bands} bands but {expected_by} takes {channels}: give it images of {channels} bands, "
            f"or a model trained on {bands}-band images"
        )
    raise DataError(
        f"image {path} has {bands} bands but DATASET_CONFIG.channels is {channels}: set it to {bands} "
        f"(or None to keep each file's bands) and MODEL_CONFIG.in_channels to match"
    )


def _pil_image(img: Image.Image, channels: int | None) -> np.ndarray:
    """A PNG/JPEG as float32 [C, H, W]: 8-bit as grey or RGB (alpha dropped), 16-bit and float as 1 band."""
    if img.mode in _PIL_16BIT_MODES:
        return np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)[None]
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)[None]
    # PIL's own luma when one band is asked for (as before), else grey stays grey and the rest is RGB (HxW or HxWxC).
    # A grey file stays one band unless three are asked for, so that a mismatch names the file's own band count.
    grey = channels == 1 or (channels != 3 and img.mode in ("1", "L", "LA", "La"))
    return np.moveaxis(_scale(np.atleast_3d(np.asarray(img.convert("L" if grey else "RGB")))), -1, 0)


def _pil_mask(img: Image.Image) -> np.ndarray:
    """A PNG/JPEG mask's raw values [M, H, W]: palette indices, grey, 16-bit, float or RGB (alpha dropped)."""
    if img.mode == "PA":  # palette with alpha: the indices are the labels
        img = img.getchannel(0)
    elif img.mode in ("LA", "La"):
        img = img.convert("L")
    elif img.mode not in _PIL_MASK_MODES:  # RGBA, CMYK, YCbCr...: alpha is transparency, not label
        img = img.convert("RGB")
    return np.moveaxis(np.atleast_3d(np.asarray(img)), -1, 0)  # PIL's HxW or HxWxC


def _decode(path: Path, pil: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """Decode ``path`` to [bands, H, W]: .npy and TIFF here, PNG/JPEG through ``pil``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy_chw(np.load(path, allow_pickle=False))
    if suffix in _TIFF_EXTENSIONS:
        return _tiff_chw(path)
    with Image.open(path) as img:
        img.load()  # decode now, inside the caller's error handling, so truncated files fail here
        return pil(img)


def read_image(path: str | Path, channels: int | None = None, expected_by: str | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or .npy image as float32 ``[C, H, W]``.

    uint8 data is divided by 255, uint16 by 65535; float data (TIFF, .npy, PIL mode F) is kept as it is, NaN too.
    TIFF bands are its pages or samples; a 3-D .npy is HxWxC or CxHxW (the smaller of the first and last sizes is
    the band axis; a tie is HxWxC). PNG/JPEG alpha is dropped. ``channels`` None keeps the file's bands; 1 and 3
    turn grey into RGB (repeated) and RGB into grey (luma). ``expected_by`` names what fixes ``channels`` when it is
    not the config (predict.py: "the model of <checkpoint>"; evaluate.py: "the exported model <file>.onnx"), for the
    message.

    Raises:
        DataError: ``cannot read image <path>: <reason>`` for a missing, corrupt, truncated or unsupported file;
            ``image <path> has <n> bands but DATASET_CONFIG.channels is <c>`` (or ``but <expected_by> takes <c>``,
            then what to give it) for any other band mismatch.
        ValueError: ``channels`` neither None nor an int >= 1.
    """
    path = Path(path)
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(f"channels must be None or an int >= 1, got {channels!r}")
    try:
        image = _scale(_decode(path, lambda img: _pil_image(img, channels)))
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return np.ascontiguousarray(_set_channels(image, channels, path, expected_by), dtype=np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or .npy mask as its raw values ``[M, H, W]``, int64 (integer or bool data) or float32.

    Nothing is thresholded (utils/data/targets.py encodes values into classes). M is 1 for grey, 16-bit and palette
    masks (a palette PNG gives its indices, not its colours), 3 for RGB colour masks (alpha dropped), K for a K-band
    TIFF or .npy.

    Raises:
        DataError: ``cannot read mask <path>: <reason>`` for a missing, corrupt, truncated or unsupported file.
    """
    path = Path(path)
    try:
        array = _decode(path, _pil_mask)
        if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
            return np.ascontiguousarray(array, dtype=np.int64)
        if np.issubdtype(array.dtype, np.floating):
            return np.ascontiguousarray(array, dtype=np.float32)
        raise ValueError(f"unsupported dtype {array.dtype}")
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read mask {path}: {exc}") from exc


def image_size(path: str | Path, kind: str) -> tuple[int, int]:
    """Height and width of a file from its header only (see :func:`read_header`).

    Raises:
        DataError: ``cannot read <kind> <path>: <reason>`` for a missing, corrupt or unsupported file.
    """
    height, width, _ = read_header(path, kind)
    return height, width


def read_header(path: str | Path, kind: str) -> tuple[int, int, str | None]:
    """Height, width and lossy format of a file from its header only (PIL lazily, .npy memory-mapped, TIFF series
    shape, axes and compression): the format is "JPEG" (PIL's reading of the content, whatever the suffix) or
    "JPEG-compressed TIFF" for a lossy one, None for PNG, other TIFF and .npy.

    Raises:
        DataError: ``cannot read <kind> <path>: <reason>`` for a missing, corrupt or unsupported file.
    """
    path = Path(path)
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return (*_npy_chw(np.load(path, mmap_mode="r", allow_pickle=False)).shape[1:], None)
        if suffix in _TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                series = _tiff_series(tif)[0]
                lossy = "JPEG-compressed TIFF" if series.keyframe.compression in _LOSSY_TIFF else None
                return series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")], lossy
        with Image.open(path) as img:
            width, height = img.size
            return height, width, _LOSSY_PIL.get(str(img.format))
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {kind} {path}: {exc}") from exc
