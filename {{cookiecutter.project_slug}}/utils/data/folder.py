"""SegmentationFolder: image/mask pairs from two sub-folders, matched by file stem, checked before training.

Every sample is ``(image, mask)``: ``image`` a float32 tensor ``[C, H, W]`` (uint8 / 255, uint16 / 65535, float as
stored, NaN too) and ``mask`` a tensor ``[M, H, W]`` of the file's raw values (int64, or float32 for float files;
utils/data/targets.py turns them into targets). A ``transform(image, mask) -> (image, mask)`` is applied last.
``group_names`` gives each pair's group (scene) for a grouped validation split.
"""

import logging
import re
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from utils.data.images import IMAGE_EXTENSIONS, DataError, read_header, read_image, read_mask
from utils.data.synthetic import PairTransform
from utils.data.system_files import is_system_file, skipped_line

# The project's console logger (train.py shows it; evaluate.py's unconfigured logging prints its warnings).
LOGGER = logging.getLogger("project.data")


def _files_by_stem(folder: Path, skipped: list[str]) -> dict[str, Path]:
    """Map file stem -> path for the image files in ``folder``; refuse an empty folder and duplicate stems. Hidden
    and system files with an image's extension (``._0000.png``) go to ``skipped`` as ``<folder name>/<name>``."""
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        # Other files (README, .gitkeep, thumbnails) are skipped rather than refused: folders often hold them.
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if is_system_file(path.name):  # AppleDouble ._x.png: not an image, and would claim the stem "._x"
            skipped.append(f"{folder.name}/{path.name}")
            continue
        if path.stem in by_stem:
            raise DataError(f"two files with the same stem in {folder}: {by_stem[path.stem].name} and {path.name}")
        by_stem[path.stem] = path
    if not by_stem:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return by_stem


class SegmentationFolder(Dataset):
    """Image/mask pairs from ``root/<image_dir>`` and ``root/<mask_dir>``, matched by file stem.

    ``images/cat.jpg`` pairs with ``masks/cat.png``; files may be PNG, JPEG, TIFF or .npy (any case of extension),
    of any number of bands (utils/data/images.py). Pairs are sorted by stem and exposed as ``.pairs``; pairs may
    differ in size from each other (patches or padding make batches), but an image and its mask may not.
    Everything that can be checked from file headers is checked here, so a bad folder fails before training
    starts rather than in the middle of an epoch. Hidden and system files (``._0000.png``, see
    utils/data/system_files.py) are skipped, counted in one warning line and listed in ``.skipped``; masks in a
    lossy format (JPEG) are listed in ``.lossy_masks`` (path -> format) for SegmentationSamples to refuse or
    threshold (utils/data/targets.py).

    Args:
        root: dataset folder.
        image_dir: sub-folder of ``root`` holding the images.
        mask_dir: sub-folder of ``root`` holding the masks (raw values: class indices, 0/255, colours, K bands).
        channels: bands of the returned images: None keeps each file's own; 1 or 3 also convert grey <-> RGB;
            any other count must match the files.
        expected_by: what fixes ``channels`` when it is not the config (an exported model), for the message of a
            band mismatch (utils/data/images.read_image).
        transform: optional paired ``transform(image, mask) -> (image, mask)``.

    Raises:
        ValueError: ``channels`` neither None nor an int >= 1.
        DataError: missing root or sub-folder, an empty sub-folder, an image without a mask or a mask without an
            image, two files with one stem in one folder, an image and mask of different sizes, or a file whose
            header cannot be read. Files that only fail to decode, or hold other bands than ``channels``, raise
            DataError when they are loaded.
    """

    def __init__(
        self,
        root: str | Path,
        image_dir: str = "images",
        mask_dir: str = "masks",
        channels: int | None = None,
        transform: PairTransform | None = None,
        expected_by: str | None = None,
    ) -> None:
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be None (the files' own bands) or an int >= 1, got {channels!r}")
        self.root = Path(root)
        self.channels = channels
        self.transform = transform
        self.expected_by = expected_by
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        self.skipped: list[str] = []
        images = _files_by_stem(self.root / image_dir, self.skipped)
        masks = _files_by_stem(self.root / mask_dir, self.skipped)
        if self.skipped:
            LOGGER.warning("%s", skipped_line(self.skipped, str(self.root)))

        for stem, path in images.items():
            if stem not in masks:
                raise DataError(f"image {path} has no mask named {stem}.* in {self.root / mask_dir}")
        for stem, path in masks.items():
            if stem not in images:
                raise DataError(f"mask {path} has no image named {stem}.* in {self.root / image_dir}")

        self.pairs: list[tuple[Path, Path]] = [(images[stem], masks[stem]) for stem in sorted(images)]
        self.lossy_masks: dict[Path, str] = {}
        for image_path, mask_path in self.pairs:
            height, width, lossy = read_header(mask_path, "mask")
            image_hw, mask_hw = read_header(image_path, "image")[:2], (height, width)
            if lossy:
                self.lossy_masks[mask_path] = lossy
            if image_hw != mask_hw:
                raise DataError(
                    f"size mismatch: image {image_path} is {image_hw[0]}x{image_hw[1]} (HxW) "
                    f"but mask {mask_path} is {mask_hw[0]}x{mask_hw[1]}"
                )

    def __len__(self) -> int:
        return len(self.pairs)

    def stems(self) -> list[str]:
        """The file stem of each pair, in ``.pairs`` order."""
        return [image_path.stem for image_path, _ in self.pairs]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path, self.channels, self.expected_by), read_mask(mask_path)
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


def group_names(dataset: Dataset, spec: str) -> list[str]:
    r"""The group (e.g. scene) of every sample of ``dataset``, in order, for a split that keeps groups together.

    ``spec`` (``VAL_GROUPS``) is a path ending in .csv with columns ``stem,group`` (one row per image file stem), or
    a regular expression searched in each image file's stem (``re.search``): its first group when it has one, else
    the whole match. ``r"^(.*)_\d+_\d+$"`` gives ``scene7`` for ``scene7_3_12``.

    Raises:
        DataError: ``dataset`` has no ``.pairs`` (file names), the CSV is missing or lacks the columns, a stem has no
            group (not in the CSV, or the expression does not match it), or ``spec`` is not a valid expression.
    """
    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        raise DataError(f"VAL_GROUPS needs a dataset with file names (SegmentationFolder); {dataset!r} has none")
    stems = [Path(image_path).stem for image_path, _ in pairs]
    if spec.lower().endswith(".csv"):
        try:
            table = pd.read_csv(spec, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:  # missing file, empty or unparsable CSV
            raise DataError(f"cannot read VAL_GROUPS file {spec}: {exc}") from exc
        if not {"stem", "group"} <= set(table.columns):
            raise DataError(f"VAL_GROUPS file {spec} needs columns stem,group; it has {','.join(table.columns)}")
        groups = dict(zip(table["stem"], table["group"], strict=True))
        conflicting = table.drop_duplicates(["stem", "group"])["stem"]
        if conflicting.duplicated().any():  # one stem in two groups: which side of the split would it go?
            raise DataError(
                f"VAL_GROUPS file {spec} gives stem {conflicting[conflicting.duplicated()].iloc[0]!r} two groups"
            )
        for stem in stems:
            if stem not in groups:
                raise DataError(f"image stem {stem!r} has no group in VAL_GROUPS file {spec}")
        return [groups[stem] for stem in stems]
    try:
        pattern = re.compile(spec)
    except re.error as exc:
        raise DataError(f"VAL_GROUPS {spec!r} is neither a .csv path nor a regular expression: {exc}") from exc
    names = []
    for stem in stems:
        match = pattern.search(stem)
        name = None if match is None else match.group(1) if pattern.groups else match.group(0)
        if name is None:
            raise DataError(f"image stem {stem!r} has no group: VAL_GROUPS {spec!r} does not match it")
        names.append(name)
    return names


def sample_source(dataset: Dataset, index: int, part: str = "mask") -> str:
    """What names sample ``index`` in messages: its ``part`` file ("image" or "mask") when the dataset has ``.pairs``
    (through Subsets), else its index in the dataset."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    pairs = getattr(dataset, "pairs", None)
    return str(pairs[index][part == "mask"]) if pairs is not None else f"sample {index} of {dataset_name(dataset)}"


def lossy_masks(dataset: Dataset) -> dict[Path, str]:
    """The masks in a lossy format, path -> format (JPEG), of the folder under ``dataset`` (through Subsets: the
    whole folder's, as the user sees it); empty for datasets without files (SyntheticShapes)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dict(getattr(dataset, "lossy_masks", None) or {})


def dataset_name(dataset: Dataset) -> str:
    """What names a dataset in messages: the repr of the dataset under any Subsets (a folder's shows its root)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return repr(dataset)
