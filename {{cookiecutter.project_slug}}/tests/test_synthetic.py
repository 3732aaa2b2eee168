"""SyntheticShapes: shapes, determinism, contrast, arguments, transforms, workers, classes and bands."""

import pytest
import torch

from utils.data.synthetic import SyntheticShapes

# --------------------------------------------------------------------------------------------------------------
# SyntheticShapes
# --------------------------------------------------------------------------------------------------------------


def test_synthetic_shapes_shapes_dtypes_and_range():
    """Images are float32 [C, S, S] in [0, 1] for any band count; binary masks int64 [1, S, S] of 0/1."""
    ds = SyntheticShapes(n_samples=8, size=32, channels=1)
    assert len(ds) == 8
    for image, mask in ds:
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert mask.shape == (1, 32, 32) and mask.dtype == torch.int64
        assert image.min() >= 0 and image.max() <= 1
        assert set(mask.unique().tolist()) <= {0, 1}
    for channels in (3, 4, 12):
        image, mask = SyntheticShapes(n_samples=2, size=16, channels=channels)[1]
        assert image.shape == (channels, 16, 16) and mask.shape == (1, 16, 16)


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
        fractions.append(mask.float().mean().item())
        if mask.any():
            gaps.append(image[mask.bool().expand_as(image)].mean() - image[~mask.bool().expand_as(image)].mean())
    assert sum(f > 0 for f in fractions) >= 0.9 * len(ds)
    assert max(fractions) < 0.9  # there is background to find too
    # Shapes are clearly brighter than the background: the task is learnable.
    assert min(gaps) > 0.2


def test_synthetic_shapes_draws_every_sample():
    """512 samples of 64x64, each an image and a mask of the stated shapes. (Its speed, about 1 ms a sample, is a
    benchmark's figure, not an assert: a wall-clock limit failed on a busy shared machine.)"""
    ds = SyntheticShapes(n_samples=512, size=64)
    samples = [ds[i] for i in range(len(ds))]
    assert len(samples) == 512
    assert {(tuple(image.shape), tuple(mask.shape)) for image, mask in samples} == {((1, 64, 64), (1, 64, 64))}


def test_synthetic_shapes_validates_arguments():
    """Bad arguments raise ValueError naming the argument."""
    for kwargs, name in [
        ({"n_samples": 0}, "n_samples"),
        ({"size": 4}, "size"),
        ({"channels": 0}, "channels"),
        ({"num_classes": 0}, "num_classes"),
    ]:
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


# --------------------------------------------------------------------------------------------------------------
# Multi-class and multi-band
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [3, 4, 6])
def test_multiclass_masks_hold_every_class(num_classes):
    """Masks hold 0..K-1 and, over a few samples, every foreground class 1..K-1 appears."""
    ds = SyntheticShapes(n_samples=16, size=32, channels=2, num_classes=num_classes)
    seen = set()
    for _, mask in ds:
        assert mask.shape == (1, 32, 32) and mask.dtype == torch.int64
        assert mask.min() >= 0 and mask.max() <= num_classes - 1
        seen |= set(mask.unique().tolist())
    # Classes come from the shape kind (3 kinds): K - 1 <= 3 foreground classes can all appear.
    assert seen == set(range(min(num_classes, 4)))


def test_multiclass_bands_carry_the_class():
    """Without noise every shape pixel sits on its class's level in every band (0.6..1, rotated per band, +-0.04)."""
    k = 4
    ds = SyntheticShapes(n_samples=8, size=32, channels=5, num_classes=k, noise=0.0)
    for image, mask in ds:
        for label in range(1, k):
            pixels = image[:, mask[0] == label]  # [bands, n]
            if pixels.numel() == 0:
                continue
            levels = 0.6 + 0.4 * ((label - 1 + torch.arange(5)) % (k - 1)) / (k - 2)
            assert (pixels - levels[:, None]).abs().max() <= 0.04 + 1e-6


def test_multiclass_shapes_match_the_binary_ones():
    """A seed gives the same shapes in both modes: the multi-class foreground is the binary mask."""
    binary = SyntheticShapes(n_samples=6, size=32, channels=3, seed=5)
    multi = SyntheticShapes(n_samples=6, size=32, channels=3, seed=5, num_classes=3)
    for i in range(6):
        assert torch.equal(multi[i][1] > 0, binary[i][1] > 0)
    # num_classes 1 (len(CLASSES) of a binary task) is binary too.
    assert torch.equal(
        SyntheticShapes(n_samples=6, size=32, num_classes=1)[3][1], SyntheticShapes(n_samples=6, size=32)[3][1]
    )


def test_multiclass_multiband_is_deterministic():
    """Same arguments, same samples; another seed, other samples; in worker processes too."""
    kwargs = {"n_samples": 4, "size": 24, "channels": 4, "num_classes": 3}
    first, again, other = (
        SyntheticShapes(**kwargs, seed=1),
        SyntheticShapes(**kwargs, seed=1),
        SyntheticShapes(**kwargs, seed=2),
    )
    for i in range(4):
        assert torch.equal(first[i][0], again[i][0]) and torch.equal(first[i][1], again[i][1])
        assert not torch.equal(first[i][0], other[i][0])
    loader = torch.utils.data.DataLoader(first, batch_size=2, num_workers=2)
    assert torch.equal(torch.cat([mask for _, mask in loader]), torch.stack([first[i][1] for i in range(4)]))
