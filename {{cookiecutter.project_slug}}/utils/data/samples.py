"""SegmentationSamples: a dataset's raw ``(image, mask)`` turned into what the model trains on.

The steps, in order: encode the mask into the task's target (utils/data/targets.py); mark no-data pixels (NaN, inf
or NODATA in any band) IGNORE in the target; normalise the image (utils/data/normalization.py) and set its no-data
pixels to 0; cut a patch; apply the augmentation. Datasets stay task-agnostic; this is the one place that knows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from utils.data.folder import lossy_masks, sample_source
from utils.data.images import DataError
from utils.data.normalization import invalid_pixels, normalize
from utils.data.targets import IGNORE, MaskEncoder
from utils.data.transforms import PairTransform, RandomPatch

__all__ = ["SegmentationSamples"]


class SegmentationSamples(Dataset):
    """``(image float32 [C, H, W], target)`` samples from a dataset of raw ``(image, mask)`` pairs.

    Args:
        dataset: returns ``(image [C, H, W], mask [M, H, W])`` as read (see utils/data/folder.py).
        encoder: maps the mask to the target (binary/multiclass/multilabel, see utils/data/targets.py).
        stats: normalisation statistics from compute_statistics, or None to keep the values as read.
        nodata: an image value meaning no data (NaN and inf always are); those pixels become IGNORE in the target
            and 0 in the normalised image, so they count in neither loss nor metrics and poison no activation.
        patch: a RandomPatch for training, or None for whole images (padded later by pad_collate).
        transform: a paired augmentation applied last, e.g. RandomFlipRotate.
        fill: what no-data pixels become in the image: 0 (the mean, after normalisation), or NaN for a model that
            normalises inside and marks them itself (an ensemble of checkpoints with their own statistics).

    Raises:
        DataError: at construction, for masks in a lossy format (JPEG) that ``encoder`` does not threshold
            (:meth:`MaskEncoder.check_lossy`); per sample, from the encoder, or an image and mask of different
            sizes, naming the mask file or sample.
    """

    def __init__(
        self,
        dataset: Dataset,
        encoder: MaskEncoder,
        stats: dict[str, Any] | None = None,
        nodata: float | None = None,
        patch: RandomPatch | None = None,
        transform: PairTransform | None = None,
        fill: float = 0.0,
    ) -> None:
        encoder.check_lossy(lossy_masks(dataset))  # before training, from the file headers read at init
        self.dataset, self.encoder, self.stats, self.nodata = dataset, encoder, stats, nodata
        self.patch, self.transform, self.fill = patch, transform, fill

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]
        image = torch.as_tensor(image, dtype=torch.float32)
        source = sample_source(self.dataset, index)
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(f"mask {source} is {tuple(mask.shape[-2:])} (HxW) but its image {tuple(image.shape[-2:])}")
        target = self.encoder(torch.as_tensor(mask), source)
        invalid = invalid_pixels(image, self.nodata)
        try:
            image = normalize(image, self.stats)
        except DataError as err:  # statistics of other data (NORMALIZATION "init", or a resumed run's)
            raise DataError(f"{sample_source(self.dataset, index, 'image')}: {err}") from None
        if invalid.any():
            target = target.masked_fill(invalid, IGNORE)  # broadcasts over the target's channels
            image = image.masked_fill(invalid, self.fill)  # after normalize: 0 is the mean, NaN would poison the batch
        if bool((target < 0).all()):  # it would score a perfect 1 in every metric, and teach nothing
            raise DataError(
                f"{source} has no pixel to learn from or score (all NaN, NODATA or IGNORE_INDEX): remove the pair"
            )
        if self.patch is not None:
            image, target = self.patch(image, target)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        method = None if self.stats is None else self.stats.get("method")
        return (
            f"{type(self).__name__}({self.dataset!r}, {self.encoder!r}, normalization={method!r}, "
            f"nodata={self.nodata!r}, patch={self.patch!r}, transform={self.transform!r})"
        )
