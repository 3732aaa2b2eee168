"""SegmentationFolder: image/mask pairs from two sub-folders, matched by file stem, checked before training.

Every sample is ``(image, mask)``: ``image`` a float32 tensor ``[C, H, W]`` in ``[0, 1]`` and ``mask`` a float32
tensor ``[1, H, W]`` holding 0 or 1. A ``transform(image, mask) -> (image, mask)`` is applied last when given.
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset

from utils.data.images import IMAGE_EXTENSIONS, DataError, image_size, read_image, read_mask
from utils.data.synthetic import PairTransform


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
            image_hw, mask_hw = image_size(image_path, "image"), image_size(mask_path, "mask")
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
