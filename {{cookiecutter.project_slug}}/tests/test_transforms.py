"""Paired transforms: image and mask stay aligned, reproducible under a seed."""

import pytest
import torch

from utils.data.transforms import Compose, RandomFlipRotate

# --------------------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------------------


def asymmetric_pair(height: int = 8, width: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """An image with distinct values everywhere (no flip or rotation maps it onto itself) and its > 0.5 mask."""
    image = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width) / (height * width)
    image = torch.cat([image, 1 - image])  # two channels, to check every channel moves together
    return image, (image[:1] > 0.5).float()


def test_random_flip_rotate_keeps_image_and_mask_aligned():
    """Every flip/rotation moves image channels and mask together."""
    transform = RandomFlipRotate()
    image, mask = asymmetric_pair()
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == image.shape and out_mask.shape == mask.shape
        assert torch.equal(out_mask, (out_image[:1] > 0.5).float())
        assert torch.equal(out_image[1], 1 - out_image[0])
        seen.add(tuple(out_image[0].flatten().tolist()))
    assert len(seen) == 8  # every one of the 8 flips/rotations of the square shows up


def test_random_flip_rotate_reproduces_under_manual_seed():
    """torch.manual_seed reproduces the sequence of transforms."""
    transform = Compose([RandomFlipRotate(), RandomFlipRotate(p_hflip=0.3)])
    image, mask = asymmetric_pair()

    def run():
        torch.manual_seed(123)
        return [transform(image, mask) for _ in range(10)]

    for (image_a, mask_a), (image_b, mask_b) in zip(run(), run(), strict=True):
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)


def test_random_flip_rotate_probabilities_and_non_square():
    """Probabilities 0 and 1 are honoured; non-square inputs are not rotated."""
    image, mask = asymmetric_pair(4, 6)
    never = RandomFlipRotate(p_hflip=0, p_vflip=0, rotate90=False)
    out_image, out_mask = never(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)
    always_h = RandomFlipRotate(p_hflip=1, p_vflip=0, rotate90=True)  # rotation skipped: 4x6 is not square
    for _ in range(5):
        out_image, out_mask = always_h(image, mask)
        assert torch.equal(out_image, image.flip(-1)) and torch.equal(out_mask, mask.flip(-1))
    with pytest.raises(ValueError, match="p_vflip"):
        RandomFlipRotate(p_vflip=1.5)


def test_compose_applies_in_order():
    """Compose applies its transforms first to last."""

    def add_one(image, mask):
        return image + 1, mask

    def double(image, mask):
        return image * 2, mask

    image, mask = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    assert torch.equal(Compose([add_one, double])(image, mask)[0], torch.full((1, 2, 2), 2.0))
    assert torch.equal(Compose([double, add_one])(image, mask)[0], torch.full((1, 2, 2), 1.0))
