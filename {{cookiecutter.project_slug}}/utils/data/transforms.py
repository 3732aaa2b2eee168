"""Paired image/mask augmentations on tensors.

A paired transform is a callable ``transform(image, mask) -> (image, mask)`` taking tensors ``[C, H, W]`` and
``[1, H, W]``. The geometric change is drawn once and applied to both, so the mask stays aligned with the image.
Randomness comes from torch's global RNG: ``torch.manual_seed`` (and the DataLoader's per-worker seeding)
reproduces it. torchvision is not used on purpose; its wheel may not match the installed torch build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["Compose", "RandomFlipRotate"]

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
