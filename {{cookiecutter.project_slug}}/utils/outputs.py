"""What predict reads and writes, without torch: its inputs and output folder (file safety), output names, label maps
and probabilities of numpy logits, and PNG, TIFF or GeoTIFF writers. The ONNX path of predict.py
(utils/onnx_inference.py) runs where only onnxruntime, numpy, pillow and tifffile (rasterio optional) are
installed; utils/prediction.py re- exports the writers for torch's path.
"""

import glob
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from utils.data.images import IMAGE_EXTENSIONS, DataError
from utils.data.system_files import is_system_file, skipped_line

TIFF_SUFFIXES = (".tif", ".tiff")
CHUNK_ROWS = 512  # label maps and probabilities are computed this many rows at a time: int64 labels of a whole
# 6000x4000 scene alone would take 192 MB


def find_inputs(patterns: list[str], skipped: list[Path] | None = None) -> list[Path]:
    """Expand files, folders and globs into a sorted list of image files. Hidden and system files that a folder or
    pattern finds (any part of the path below the folder, or below the pattern's fixed start, hidden or a system
    folder) go to ``skipped`` instead; a file named as such is kept.

    Raises:
        DataError: a pattern matches nothing, or no image is left.
    """
    found: set[Path] = set()
    skipped = [] if skipped is None else skipped
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            base, candidates = path, [p for p in path.iterdir() if p.is_file()]
        elif path.is_file():
            base, candidates = None, [path]
        else:
            magic = next((i for i, part in enumerate(path.parts) if glob.has_magic(part)), len(path.parts))
            matches = [Path(p) for p in glob.glob(pattern, recursive=True)]
            base, candidates = Path(*path.parts[:magic]), [p for p in matches if p.is_file()]
            if not matches:
                raise DataError(f"no such file, folder or match: {pattern}")
        for candidate in (p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS):
            if base is not None and is_system_file(candidate.relative_to(base)):
                skipped.append(candidate)
            else:
                found.add(candidate)
    if not found:
        also = f"; {skipped_line(skipped)}" if skipped else ""
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(patterns)}{also}")
    return sorted(found)


def output_folder(output: str, inputs: list[Path], names: dict[Path, list[str]] | None = None) -> Path:
    """The folder for the outputs, created; refused when it is a file or an output would overwrite an input or
    another output. ``names``: the files each input writes (default ``<stem>.png``).

    Raises:
        DataError: the folder cannot be used, or two inputs would write the same file, or an output would replace
            an input (e.g. ``<stem>.png`` in the input's own folder).
    """
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"-o {output} is a file, not a folder; choose a folder for the masks")
    written: dict[Path, Path] = {}
    for path in inputs:
        for name in (names or {}).get(path, [f"{path.stem}.png"]):
            target = (folder / name).resolve()
            if target in written:
                raise DataError(f"{written[target]} and {path} would both write {name}; predict them into two folders")
            written[target] = path
    overwritten = sorted(set(written) & {path.resolve() for path in inputs})
    if overwritten:
        raise DataError(f"-o {output}: a mask would overwrite the input {overwritten[0]}; choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"-o {output} cannot be created ({err.strerror}); choose a folder you can write") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"-o {output} is not writable; choose a folder you can write")
    return folder


def output_names(path: Path, task: str, with_probabilities: bool) -> list[str]:
    """The files predict writes for input ``path``: its label map (PNG; TIFF for TIFF inputs and for multilabel
    maps, which have K bands) and, if asked, ``<stem>_prob.tif``."""
    tiff = task == "multilabel" or path.suffix.lower() in TIFF_SUFFIXES
    names = [f"{path.stem}{'.tif' if tiff else '.png'}"]
    return [*names, f"{path.stem}_prob.tif"] if with_probabilities else names


def label_array(logits: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Label map of float logits ``[1, K, H, W]``, as utils/prediction.label_map of torch's: binary uint8 ``[H, W]``
    0/255; multiclass ``[H, W]`` class indices (argmax; uint8, uint16 beyond 256 classes); multilabel uint8
    ``[K, H, W]`` 0/255. ``threshold`` (in (0, 1)) is compared as a logit, as utils/metrics.predicted_labels does."""
    classes = logits.shape[1]
    dtype = np.uint16 if task == "multiclass" and classes > 256 else np.uint8
    cut = math.log(threshold / (1 - threshold))
    rows = []
    for start in range(0, logits.shape[-2], CHUNK_ROWS):
        chunk = logits[0, :, start : start + CHUNK_ROWS, :]
        rows.append(chunk.argmax(0).astype(dtype) if task == "multiclass" else (chunk > cut).astype(dtype) * 255)
    labels = np.concatenate(rows, axis=-2)
    return labels[0] if task == "binary" else labels


def probability_array(logits: np.ndarray, task: str) -> np.ndarray:
    """Float32 ``[K, H, W]`` probabilities of logits ``[1, K, H, W]``: softmax over classes (multiclass, shifted by
    the maximum so that exp cannot overflow) or sigmoid (binary, multilabel)."""
    rows = []
    for start in range(0, logits.shape[-2], CHUNK_ROWS):
        chunk = logits[0, :, start : start + CHUNK_ROWS, :].astype(np.float32)
        if task == "multiclass":
            exp = np.exp(chunk - chunk.max(0, keepdims=True))
            rows.append(exp / exp.sum(0, keepdims=True))
        else:
            rows.append(0.5 * (1.0 + np.tanh(0.5 * chunk)))  # sigmoid without overflow for large |logit|
    return np.concatenate(rows, axis=-2).astype(np.float32, copy=False)


def georeference(path: Path) -> dict[str, Any] | None:
    """The CRS and transform of a GeoTIFF when rasterio is installed (None for other files, or without them)."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        import rasterio  # pylint: disable=import-outside-toplevel  # optional: GeoTIFFs only
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as source:
                if source.crs is None and source.transform.is_identity:
                    return None
                return {"crs": source.crs, "transform": source.transform}
    except rasterio.errors.RasterioError:
        return None  # tifffile reads it, or says why not


def write_array(path: Path, array: np.ndarray, geo: dict[str, Any] | None = None) -> None:
    """Write ``array`` ``[H, W]`` or ``[K, H, W]``: a GeoTIFF with ``geo`` (rasterio), else TIFF (tifffile) or PNG
    by the suffix. Raises OSError when the file cannot be written."""
    if path.suffix.lower() == ".png":
        Image.fromarray(array).save(path)
    elif geo is not None:
        import rasterio  # pylint: disable=import-outside-toplevel  # georeference() found it

        bands = array.reshape(-1, *array.shape[-2:])
        profile = {"driver": "GTiff", "count": len(bands), "dtype": bands.dtype.name, "compress": "deflate"}
        with rasterio.open(path, "w", height=bands.shape[1], width=bands.shape[2], **profile, **geo) as target:
            target.write(bands)
    else:
        compression = None if array.dtype.kind == "f" else "zlib"  # label maps shrink a hundredfold, noise does not
        tifffile.imwrite(path, array, photometric="minisblack", compression=compression)


def write_array_outputs(paths: list[Path], logits: np.ndarray, task: str, threshold: float, source: Path) -> None:
    """Write the label map of numpy ``logits`` [1, K, H, W] to ``paths[0]`` and, with a second path, the
    probabilities; GeoTIFFs with the georeferencing of ``source`` when it has one (see :func:`output_names`)."""
    geo = georeference(source)
    write_array(paths[0], label_array(logits, task, threshold), geo)
    if len(paths) > 1:
        write_array(paths[1], probability_array(logits, task), geo)
