"""Paired transforms: image and target stay aligned, reproducible under a seed; patches; padded batches."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from utils.data.images import DataError
from utils.data.targets import IGNORE
from utils.data.transforms import Compose, RandomFlipRotate, RandomPatch, pad_collate

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


def test_random_flip_rotate_moves_k_channel_int64_targets():
    """Multiclass (int64) and multilabel (K channels) targets move with the image and keep dtype and shape."""
    image, _ = asymmetric_pair()

    def classes_of(img):  # image channel 0 holds 0..63 / 64: each pixel's class follows its value
        return (img[:1] * 64).round().to(torch.int64) % 3

    indices = classes_of(image)
    labels = torch.cat([indices == k for k in range(3)]).float()  # [3, H, W]
    torch.manual_seed(1)
    for _ in range(20):
        out_image, out_indices = RandomFlipRotate()(image, indices)
        assert out_indices.dtype == torch.int64 and torch.equal(out_indices, classes_of(out_image))
        out_image, out_labels = RandomFlipRotate()(image, labels)
        assert out_labels.shape == (3, 8, 8) and torch.equal(out_labels.argmax(0, keepdim=True), classes_of(out_image))


# --------------------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------------------


def coordinates(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-band image holding each pixel's row and column, and an int64 target [1, H, W] holding row * width + col."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([rows, cols]).float(), (rows * width + cols)[None]


def test_random_patch_size_and_alignment():
    image, target = coordinates(40, 50)
    patch = RandomPatch(16)
    torch.manual_seed(0)
    corners = set()
    for _ in range(50):
        out_image, out_target = patch(image, target)
        assert out_image.shape == (2, 16, 16) and out_target.shape == (1, 16, 16) and out_target.dtype == torch.int64
        assert torch.equal(out_target[0], (out_image[0] * 50 + out_image[1]).long())  # same window for both
        assert out_image[0].diff(dim=0).eq(1).all() and out_image[1].diff(dim=1).eq(1).all()  # a contiguous window
        corners.add((int(out_image[0, 0, 0]), int(out_image[1, 0, 0])))
    assert len(corners) > 40 and max(c[0] for c in corners) <= 24 and max(c[1] for c in corners) <= 34


def test_random_patch_pads_small_images_with_ignore():
    image, target = coordinates(10, 20)
    torch.manual_seed(0)
    out_image, out_target = RandomPatch(16)(image, target.float())
    assert out_image.shape == (2, 16, 16) and out_target.shape == (1, 16, 16)
    assert (out_target[:, 10:] == IGNORE).all() and (out_image[:, 10:] == 0).all()  # rows below the image
    assert (out_target[:, :10] >= 0).all()  # width 20 >= 16: only cropped, not padded
    whole_image, whole_target = RandomPatch(32)(image, target)
    assert torch.equal(whole_target[:, :10, :20], target) and (whole_target[:, 10:] == IGNORE).all()
    assert (whole_target[:, :, 20:] == IGNORE).all() and torch.equal(whole_image[:, :10, :20], image)


def foreground_share(foreground: float, target: torch.Tensor, draws: int = 200) -> float:
    """The share of patches of a 128x128 image holding at least one labelled pixel."""
    image = torch.zeros(1, 128, 128)
    patch = RandomPatch(16, foreground=foreground)
    torch.manual_seed(0)
    hits = 0
    for _ in range(draws):
        _, out = patch(image, target)
        hits += bool(((out > 0) if out.shape[0] == 1 else (out == 1).any(0)).any())
    return hits / draws


def test_foreground_sampling_finds_sparse_objects():
    target = torch.zeros(1, 128, 128, dtype=torch.int64)
    target[0, 100:103, 5:8] = 2  # one 3x3 object in a corner: about 2% of uniform patches touch it
    target[0, 50:60, 50:60] = IGNORE  # ignored pixels are not foreground
    uniform, weighted = foreground_share(0.0, target), foreground_share(1.0, target)
    assert uniform < 0.1 and weighted == 1.0
    assert 0.35 < foreground_share(0.5, target) < 0.65
    multilabel = torch.zeros(3, 128, 128)
    multilabel[2, 3, 120] = 1.0  # one pixel of the last label, near an edge: the window is clamped, still hits it
    assert foreground_share(1.0, multilabel) == 1.0
    assert foreground_share(1.0, torch.zeros(1, 128, 128)) == 0.0  # nothing labelled: uniform, no error


def test_random_patch_refuses_bad_settings():
    for args in ((0,), (16.5,), (16, 1.5)):
        with pytest.raises(ValueError):
            RandomPatch(*args)


# --------------------------------------------------------------------------------------------------------------
# Padded batches
# --------------------------------------------------------------------------------------------------------------


def test_pad_collate_mixed_sizes_to_one_divisible_batch():
    """64x64 and 96x80 pairs make one batch of 96x80 (divisor 16), padding bottom/right: image 0, target IGNORE."""
    small = (torch.ones(3, 64, 64), torch.ones(1, 64, 64, dtype=torch.int64))
    large = (torch.full((3, 96, 80), 2.0), torch.full((1, 96, 80), 2, dtype=torch.int64))
    collate = pad_collate(16)
    images, targets = collate([small, large])
    assert images.shape == (2, 3, 96, 80) and targets.shape == (2, 1, 96, 80) and targets.dtype == torch.int64
    assert (images[0, :, :64, :64] == 1).all() and (images[0, :, 64:] == 0).all() and (images[0, :, :, 64:] == 0).all()
    assert (targets[0, :, :64, :64] == 1).all() and (targets[0, :, 64:] == IGNORE).all()
    assert (targets[0, :, :, 64:] == IGNORE).all() and (targets[1] == 2).all()
    images, targets = pad_collate(32)([small, large])  # 96x80 rounded up to multiples of 32
    assert images.shape == (2, 3, 96, 96) and (targets[1, :, :, 80:] == IGNORE).all()
    images, targets = pad_collate(64)([small])  # already a multiple: unchanged
    assert torch.equal(images[0], small[0]) and torch.equal(targets[0], small[1])


def test_pad_collate_in_a_dataloader_with_workers():
    pairs = [(torch.rand(1, h, w), torch.zeros(2, h, w)) for h, w in ((30, 40), (17, 9), (33, 33))]
    collate = pickle.loads(pickle.dumps(pad_collate(8)))
    loader = DataLoader(pairs, batch_size=3, collate_fn=collate, num_workers=1)
    images, targets = next(iter(loader))
    assert images.shape == (3, 1, 40, 40) and targets.shape == (3, 2, 40, 40)
    assert (targets[1, :, 17:] == IGNORE).all() and (targets[1, :, :17, :9] == 0).all()


def test_pad_collate_refuses_mixed_band_counts():
    batch = [(torch.zeros(3, 8, 8), torch.zeros(1, 8, 8)), (torch.zeros(4, 8, 8), torch.zeros(1, 8, 8))]
    with pytest.raises(DataError, match="3 and 4 bands: set DATASET_CONFIG.channels"):
        pad_collate(8)(batch)
    with pytest.raises(ValueError, match="divisor"):
        pad_collate(0)
