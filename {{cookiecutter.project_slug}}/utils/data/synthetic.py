"""SyntheticShapes: random filled shapes and their masks, generated on the fly (offline, deterministic).

Every sample is ``(image, mask)``: ``image`` a float32 tensor ``[C, H, W]`` in ``[0, 1]`` and ``mask`` an int64
tensor ``[1, H, W]`` of raw class indices (0 background; binary: 0/1, multi-class: 0..K-1).
"""

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

PairTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _shape_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """One random filled circle, rectangle or triangle: a boolean [size, size] mask and its kind (0, 1 or 2)."""
    radius = rng.uniform(0.08, 0.22) * size
    # Keep the whole shape inside the image so the mask is never empty.
    cy, cx = rng.uniform(radius, size - 1 - radius, size=2)
    kind = int(rng.integers(3))
    if kind == 0:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2, kind
    if kind == 1:
        half_h, half_w = rng.uniform(0.5, 1.0, size=2) * radius
        return (np.abs(yy - cy) <= half_h) & (np.abs(xx - cx) <= half_w), kind
    # Triangle: three vertices on the circle, spread enough apart that it is never a sliver.
    angles = rng.uniform(0, 2 * math.pi) + np.arange(3) * (2 * math.pi / 3) + rng.uniform(-0.4, 0.4, size=3)
    vy, vx = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    # Edge functions: a point is inside when it lies on the same side of all three (counter-)clockwise edges.
    edges = [(vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]) for i, j in ((0, 1), (1, 2), (2, 0))]
    inside = ((edges[0] >= 0) & (edges[1] >= 0) & (edges[2] >= 0)) | (
        (edges[0] <= 0) & (edges[1] <= 0) & (edges[2] <= 0)
    )
    return inside, kind


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, channels: int) -> np.ndarray:
    """A smooth float32 [channels, H, W] background in [0, 0.35]: a linear ramp in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * xx + math.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    # Offset and slope per channel, so colour backgrounds get a colour cast too.
    low = rng.uniform(0.0, 0.15, size=(channels, 1, 1)).astype(np.float32)
    amplitude = rng.uniform(0.0, 0.2, size=(channels, 1, 1)).astype(np.float32)
    return low + amplitude * ramp


def _class_intensity(rng: np.random.Generator, label: int, num_classes: int, channels: int) -> np.ndarray:
    """Float32 [channels, 1] intensities of a shape of class ``label`` (1..K-1) for K = ``num_classes`` > 2.

    Band b puts class c on level (c - 1 + b) mod (K - 1) of a ladder from 0.6 to 1: every band alone tells the classes
    apart, and more bands see the same classes under independent noise, so they help. A jitter of +-0.04 per band
    keeps levels from being exact constants. Draws as many numbers as the binary intensity, so the shapes' geometry
    for a seed is the same in both modes.
    """
    jitter = rng.uniform(-0.04, 0.04, size=(channels, 1))
    levels = (label - 1 + np.arange(channels)[:, None]) % (num_classes - 1)
    return (0.6 + 0.4 * levels / max(num_classes - 2, 1) + jitter).astype(np.float32)


class SyntheticShapes(Dataset):
    """Random filled circles, rectangles and triangles on a smooth background: a segmentation task needing no files.

    Sample ``i`` is drawn from ``np.random.default_rng([seed, i])``, so it is the same on every call, in every
    worker process and for every instance with the same arguments, and different for another seed.
    Each image holds 1..``max_shapes`` shapes of intensity 0.6..1 on a linear gradient background of 0..0.35, with
    gaussian noise of standard deviation ``noise``, clipped to [0, 1]. Binary (``num_classes`` 2): the mask is the
    union of the shapes, 0/1. Multi-class (K > 2): a shape of kind k (circle 0, rectangle 1, triangle 2) is class
    1 + k % (K - 1), drawn with a class-dependent intensity in every band; later shapes cover earlier ones; the
    mask holds 0 (background) .. K - 1 (three kinds: with K > 4 only classes 1..3 occur).

    Args:
        n_samples: number of samples (``len(dataset)``).
        size: height and width of the square images.
        channels: bands, any >= 1 (binary: each shape and the background get a random intensity per band).
        num_classes: mask values including the background: 2 (or 1, as len(CLASSES) of a binary task) is binary,
            K > 2 multi-class.
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
        num_classes: int = 2,
        max_shapes: int = 3,
        noise: float = 0.1,
        seed: int = 0,
        transform: PairTransform | None = None,
    ) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.n_samples = int(n_samples)
        self.size = int(size)
        self.channels = int(channels)
        self.num_classes = int(num_classes)
        self.max_shapes = int(max_shapes)
        self.noise = float(noise)
        self.seed = int(seed)
        self.transform = transform

    def __len__(self) -> int:
        return self.n_samples

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return sample ``index`` as numpy arrays: image float32 [C, S, S] and mask int64 [1, S, S]."""
        rng = np.random.default_rng([self.seed, index])
        size, channels = self.size, self.channels
        # Row and column coordinates, broadcast against each other instead of building full meshgrids.
        coords = np.arange(size, dtype=np.float32)
        yy, xx = coords[:, None], coords[None, :]

        image = _background(rng, yy, xx, channels)
        mask = np.zeros((size, size), dtype=np.int64)
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            shape, kind = _shape_mask(rng, yy, xx, size)
            # Shapes stay at least 0.25 (2.5 noise sd) brighter than the background so the task is learnable.
            if self.num_classes <= 2:
                label, intensity = 1, rng.uniform(0.6, 1.0, size=(channels, 1)).astype(np.float32)
            else:
                label = 1 + kind % (self.num_classes - 1)
                intensity = _class_intensity(rng, label, self.num_classes, channels)
            image[:, shape] = intensity
            mask[shape] = label

        image += rng.normal(0.0, self.noise, size=image.shape).astype(np.float32)
        np.clip(image, 0.0, 1.0, out=image)
        return image.astype(np.float32, copy=False), mask[None]

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
            f"num_classes={self.num_classes}, max_shapes={self.max_shapes}, noise={self.noise}, seed={self.seed})"
        )
