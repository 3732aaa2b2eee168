"""SyntheticShapes: shapes, determinism, contrast, speed, arguments, transforms, workers."""

import time

import pytest
import torch

from utils.data.synthetic import SyntheticShapes

# --------------------------------------------------------------------------------------------------------------
# SyntheticShapes
# --------------------------------------------------------------------------------------------------------------


def test_synthetic_shapes_shapes_dtypes_and_range():
    """Images are float32 [C, S, S] in [0, 1]; masks float32 [1, S, S] of 0/1."""
    ds = SyntheticShapes(n_samples=8, size=32, channels=1)
    assert len(ds) == 8
    for image, mask in ds:
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert mask.shape == (1, 32, 32) and mask.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    image, mask = SyntheticShapes(n_samples=2, size=16, channels=3)[1]
    assert image.shape == (3, 16, 16) and mask.shape == (1, 16, 16)


def test_synthetic_shapes_is_deterministic_per_seed():
    """Same seed, same samples (in any order); another seed, other samples."""
    first, again, other = (
        SyntheticShapes(n_samples=4, seed=3),
        SyntheticShapes(n_samples=4, seed=3),
        SyntheticShapes(n_samples=4, seed=4),
    )
    for i in range(4):
        assert torch.equal(first[i][0], again[i][0]) and torch.equal(first[i][1], again[i][1])
        assert not torch.equal(first[i][0], other[i][0])
    # Indexing order does not matter: sample i depends only on (seed, i).
    assert torch.equal(first[2][0], SyntheticShapes(n_samples=4, seed=3)[2][0])
    assert not torch.equal(first[0][1], first[1][1])


def test_synthetic_masks_are_mostly_non_empty_and_contrast_with_background():
    """Most samples hold a shape, and shapes stand out."""
    ds = SyntheticShapes(n_samples=64, size=32)
    fractions = []
    gaps = []
    for image, mask in ds:
        fractions.append(mask.mean().item())
        if mask.any():
            gaps.append(image[mask.bool().expand_as(image)].mean() - image[~mask.bool().expand_as(image)].mean())
    assert sum(f > 0 for f in fractions) >= 0.9 * len(ds)
    assert max(fractions) < 0.9  # there is background to find too
    # Shapes are clearly brighter than the background: the task is learnable.
    assert min(gaps) > 0.2


def test_synthetic_shapes_is_fast():
    """512 samples of 64x64 generate well under a second."""
    ds = SyntheticShapes(n_samples=512, size=64)
    start = time.perf_counter()
    samples = [ds[i] for i in range(len(ds))]
    assert time.perf_counter() - start < 1.0 and len(samples) == 512


def test_synthetic_shapes_validates_arguments():
    """Bad arguments raise ValueError naming the argument."""
    for kwargs, name in [({"n_samples": 0}, "n_samples"), ({"size": 4}, "size"), ({"channels": 2}, "channels")]:
        with pytest.raises(ValueError, match=name):
            SyntheticShapes(**kwargs)
    with pytest.raises(IndexError):
        _ = SyntheticShapes(n_samples=2)[2]


def test_synthetic_shapes_applies_transform():
    """The paired transform sees and replaces both tensors."""

    def invert(image, mask):
        return 1 - image, 1 - mask

    plain = SyntheticShapes(n_samples=1, size=16)[0]
    inverted = SyntheticShapes(n_samples=1, size=16, transform=invert)[0]
    assert torch.equal(inverted[0], 1 - plain[0]) and torch.equal(inverted[1], 1 - plain[1])


def test_synthetic_shapes_works_in_a_dataloader_with_workers():
    """Worker processes produce exactly the samples of the main process."""
    loader = torch.utils.data.DataLoader(SyntheticShapes(n_samples=6, size=16), batch_size=3, num_workers=2)
    images = torch.cat([image for image, _ in loader])
    assert torch.equal(images, torch.stack([SyntheticShapes(n_samples=6, size=16)[i][0] for i in range(6)]))
