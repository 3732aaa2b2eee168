"""Paired image/target augmentations and patch sampling on tensors, and the collate function that pads batches.

A paired transform is a callable ``transform(image, target) -> (image, target)`` taking tensors ``[C, H, W]`` and
``[M, H, W]`` (any M and dtype: a 0/1 float mask, int64 class indices, K multilabel channels). The geometric change is
drawn once and applied to both, so the target stays aligned with the image. Randomness comes from torch's global RNG:
``torch.manual_seed`` (and the DataLoader's per-worker seeding) reproduces it. Padding gives the image 0 (the mean
after normalisation) and the target IGNORE, so padded pixels count in neither loss nor metrics. torchvision is not used
on purpose; its wheel may not match the installed torch build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from utils.data.images import DataError
from utils.data.targets import IGNORE

__all__ = ["Compose", "PadCollate", "RandomFlipRotate", "RandomPatch", "pad_collate"]

PairTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class RandomFlipRotate:
    """Random horizontal flip, vertical flip and rotation by a multiple of 90 degrees, the same for image and mask.

    Args:
        p_hflip: probability of flipping left-right.
        p_vflip: probability of flipping top-bottom.
        rotate90: rotate by k * 90 degrees, k uniform in {0, 1, 2, 3}. Applied only to square inputs, since a
            quarter turn would swap height and width of a non-square batch member.
    """

    def __init__(self, p_hflip: float = 0.5, p_vflip: float = 0.5, rotate90: bool = True) -> None:
        for name, value in (("p_hflip", p_hflip), ("p_vflip", p_vflip)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.p_hflip = float(p_hflip)
        self.p_vflip = float(p_vflip)
        self.rotate90 = bool(rotate90)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the transformed ``(image, mask)``; both must share their last two (H, W) dimensions."""
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in height/width")
        # Draw all random numbers every call, whatever the outcome, so one seed gives one stream of decisions.
        hflip = torch.rand(()).item() < self.p_hflip
        vflip = torch.rand(()).item() < self.p_vflip
        turns = int(torch.randint(0, 4, ()).item())
        if hflip:
            image, mask = image.flip(-1), mask.flip(-1)
        if vflip:
            image, mask = image.flip(-2), mask.flip(-2)
        if self.rotate90 and turns and image.shape[-1] == image.shape[-2]:
            image, mask = torch.rot90(image, turns, dims=(-2, -1)), torch.rot90(mask, turns, dims=(-2, -1))
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p_hflip={self.p_hflip}, p_vflip={self.p_vflip}, rotate90={self.rotate90})"


class Compose:
    """Apply paired transforms one after the other.

    Args:
        transforms: paired callables ``(image, mask) -> (image, mask)``, applied in order.
    """

    def __init__(self, transforms: Sequence[PairTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(image, mask)`` after every transform."""
        for transform in self.transforms:
            image, mask = transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"


class RandomPatch:
    """A random ``size`` x ``size`` crop of ``(image [C, H, W], target [M, H, W])``, the same window for both.

    Args:
        size: patch height and width in pixels. An image smaller than that is first padded on the bottom/right
            (image 0, target IGNORE), so every patch has the same shape and batches stack.
        foreground: probability of centring the patch (clamped to the image) on a labelled pixel drawn uniformly:
            target > 0 for one-channel targets (neither background nor IGNORE), any channel == 1 for multilabel
            ones. Otherwise, or when the target has no labelled pixel, the window is uniform. Sparse objects then
            show up in far more patches than uniform sampling gives them.
    """

    def __init__(self, size: int, foreground: float = 0.0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"PATCH_SIZE must be a positive integer, got {size!r}")
        if not 0.0 <= foreground <= 1.0:
            raise ValueError(f"PATCH_FOREGROUND must be in [0, 1], got {foreground!r}")
        self.size, self.foreground = size, float(foreground)

    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the patch ``(image [C, size, size], target [M, size, size])`` (copies, not views)."""
        if image.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and target {tuple(target.shape)} differ in height/width")
        height, width = max(image.shape[-2], self.size), max(image.shape[-1], self.size)
        if (height, width) != tuple(image.shape[-2:]):
            image, target = _pad(image, height, width, 0), _pad(target, height, width, IGNORE)
        top = int(torch.randint(0, height - self.size + 1, ()).item())
        left = int(torch.randint(0, width - self.size + 1, ()).item())
        if self.foreground and torch.rand(()).item() < self.foreground:
            labelled = target[0] > 0 if target.shape[0] == 1 else (target == 1).any(0)
            where = labelled.reshape(-1).nonzero()
            if len(where):
                pixel = int(where[torch.randint(0, len(where), ())].item())
                row, col = divmod(pixel, width)
                top = min(max(row - self.size // 2, 0), height - self.size)
                left = min(max(col - self.size // 2, 0), width - self.size)
        window = (..., slice(top, top + self.size), slice(left, left + self.size))
        # clone: a view would keep (and, across worker processes, ship) the whole image's storage
        return image[window].clone(), target[window].clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, foreground={self.foreground})"


def _pad(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """``tensor`` ``[..., h, w]`` padded on the bottom/right to ``[..., height, width]`` with ``value``."""
    out = torch.full((*tensor.shape[:-2], height, width), value, dtype=tensor.dtype)
    out[..., : tensor.shape[-2], : tensor.shape[-1]] = tensor
    return out


class PadCollate:
    """DataLoader ``collate_fn``: pad every ``(image, target)`` of a batch to one size, then stack.

    The common size is the batch's largest height and width, each rounded up to a multiple of ``divisor`` (a U-Net
    of depth d needs 2**d). Padding goes on the bottom/right, so pixel (y, x) stays (y, x): image ``fill`` (default 0),
    target IGNORE. A class rather than a closure, so DataLoader worker processes can pickle it.

    Returns ``(images [N, C, H, W], targets [N, M, H, W])``, targets keeping their dtype.

    Raises:
        DataError: images (or targets) of one batch with different band (channel) counts.
    """

    def __init__(self, divisor: int = 1, fill: float = 0.0) -> None:
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
            raise ValueError(f"divisor must be a positive integer, got {divisor!r}")
        self.divisor, self.fill = divisor, fill

    def __call__(self, batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = zip(*batch, strict=True)
        for name, tensors, hint in (
            ("images", images, ": set DATASET_CONFIG.channels so that every image has the same bands"),
            ("targets", targets, " (masks with different channel counts)"),
        ):
            counts = sorted({int(t.shape[0]) for t in tensors})
            if len(counts) > 1:
                raise DataError(f"{name} of one batch have {' and '.join(map(str, counts))} bands{hint}")
        height = _round_up(max(int(t.shape[-2]) for t in images), self.divisor)
        width = _round_up(max(int(t.shape[-1]) for t in images), self.divisor)
        return (
            torch.stack([_pad(t, height, width, self.fill) if t.shape[-2:] != (height, width) else t for t in images]),
            torch.stack([_pad(t, height, width, IGNORE) if t.shape[-2:] != (height, width) else t for t in targets]),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(divisor={self.divisor})"


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def pad_collate(divisor: int = 1, fill: float = 0.0) -> PadCollate:
    """A picklable DataLoader ``collate_fn`` padding each batch to a common size divisible by ``divisor``; images
    with ``fill`` (0: the mean of normalised bands; NaN: no data, for models that normalise inside, utils/ensemble.py),
    targets with IGNORE."""
    return PadCollate(divisor, fill)
