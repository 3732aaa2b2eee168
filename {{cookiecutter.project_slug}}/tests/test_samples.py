"""SegmentationSamples: raw (image, mask) -> encoded, no-data-masked, normalised, patched, augmented samples."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from utils.data.folder import sample_source
from utils.data.images import DataError
from utils.data.normalization import compute_statistics
from utils.data.samples import SegmentationSamples
from utils.data.targets import IGNORE, MaskEncoder
from utils.data.transforms import RandomFlipRotate, RandomPatch, pad_collate


class Pairs(torch.utils.data.Dataset):
    """Tiny in-memory dataset returning raw (image float32 [C, H, W], mask int64 [1, H, W]) like SegmentationFolder."""

    def __init__(self, samples, pairs=None):
        self.samples = samples
        if pairs is not None:
            self.pairs = pairs

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]

    def __repr__(self):
        return f"Pairs({len(self)})"


def three_class_samples(count=4, size=24):
    """2-band float images (raw scale 100..400) whose masks hold 0, 1, 2 and 255 (void) in bands of rows."""
    samples = []
    for i in range(count):
        mask = torch.zeros(1, size, size, dtype=torch.int64)
        mask[:, 8:16], mask[:, 16:22], mask[:, 22:] = 1, 2, 255
        image = torch.stack([100.0 + 50 * mask[0].clamp(max=3) + i, 400.0 - 30 * mask[0].clamp(max=3)]).float()
        samples.append((image, mask))
    return samples


def test_pipeline_encodes_normalises_and_keeps_alignment():
    dataset = Pairs(three_class_samples())
    stats = compute_statistics(dataset, "meanstd")
    samples = SegmentationSamples(dataset, MaskEncoder("multiclass", 3, ignore_index=255), stats=stats)
    assert len(samples) == 4
    image, target = samples[1]
    assert image.dtype == torch.float32 and image.shape == (2, 24, 24)
    assert target.dtype == torch.int64 and target.shape == (1, 24, 24)
    assert target[0, :8].eq(0).all() and target[0, 8:16].eq(1).all() and target[0, 16:22].eq(2).all()
    assert target[0, 22:].eq(IGNORE).all()
    everything = torch.stack([samples[i][0] for i in range(4)])
    assert torch.allclose(everything.mean((0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.equal(dataset.samples[1][1][0, 0], torch.zeros(24, dtype=torch.int64))  # the raw data untouched


def test_nan_and_nodata_pixels_become_ignore_and_zero():
    image = torch.full((2, 8, 8), 5.0)
    image[0, 1, 1] = float("nan")
    image[1, 2, 3] = -9999.0
    mask = torch.ones(3, 8, 8, dtype=torch.int64)  # multilabel: every label set everywhere
    dataset = Pairs([(image, mask)])
    stats = {"method": "meanstd", "mean": [4.0, 3.0], "std": [2.0, 2.0]}
    samples = SegmentationSamples(dataset, MaskEncoder("multilabel", 3), stats=stats, nodata=-9999.0)
    out_image, target = samples[0]
    assert torch.isfinite(out_image).all()
    assert out_image[:, 1, 1].tolist() == [0.0, 0.0] and out_image[:, 2, 3].tolist() == [0.0, 0.0]
    assert out_image[:, 0, 0].tolist() == [0.5, 1.0]  # (5 - 4) / 2, (5 - 3) / 2
    assert target[:, 1, 1].tolist() == [IGNORE] * 3 and target[:, 2, 3].tolist() == [IGNORE] * 3
    assert (target == IGNORE).sum() == 6 and (target == 1).sum() == 3 * 62
    binary = SegmentationSamples(dataset, MaskEncoder("binary", 1))  # no stats, no nodata: NaN still ignored
    out_image, target = binary[0]
    assert target.shape == (1, 8, 8) and target[0, 1, 1] == IGNORE and target[0, 2, 3] == 1
    assert out_image[0, 1, 1] == 0 and out_image[1, 2, 3] == -9999.0


def test_errors_name_the_mask_file_through_subsets():
    samples = three_class_samples(count=3)
    samples[2][1][0, 0, 0] = 7
    pairs = [(Path(f"images/t{i}.png"), Path(f"masks/t{i}.png")) for i in range(3)]
    folder = Pairs(samples, pairs=pairs)
    encoder = MaskEncoder("multiclass", 3, ignore_index=255)
    subset = Subset(Subset(folder, [0, 2]), [1])
    assert sample_source(subset, 0) == str(Path("masks/t2.png"))
    with pytest.raises(DataError, match=r"mask masks.t2\.png holds value 7"):
        _ = SegmentationSamples(subset, encoder)[0]
    with pytest.raises(DataError, match=r"mask sample 2 of Pairs\(3\) holds value 7"):
        _ = SegmentationSamples(Pairs(samples), encoder)[2]
    mismatched = Pairs([(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9, dtype=torch.int64))], pairs=pairs[:1])
    with pytest.raises(DataError, match=r"masks.t0\.png is \(8, 9\)"):
        _ = SegmentationSamples(mismatched, encoder)[0]


def test_patches_and_augmentation_through_a_padded_loader():
    """Mixed sizes, a patch larger than one image, flips: batches of one shape, ignored padding, aligned targets."""
    samples = []
    for height, width in ((40, 48), (20, 28), (64, 64)):
        image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
        samples.append((image, (image[:1] > 0.5).to(torch.int64) * 255))  # a 0/255 binary mask from the image
    dataset = Pairs(samples)
    training = SegmentationSamples(
        dataset, MaskEncoder("binary", 1), patch=RandomPatch(32), transform=RandomFlipRotate()
    )
    torch.manual_seed(0)
    images, targets = next(iter(DataLoader(training, batch_size=3, collate_fn=pad_collate(16))))
    assert images.shape == (3, 3, 32, 32) and targets.shape == (3, 1, 32, 32) and targets.dtype == torch.float32
    valid = targets >= 0
    assert torch.equal(targets[valid], (images[:, :1] > 0.5).float()[valid])  # target follows its image
    ignored = targets[1, 0] == IGNORE  # the 20x28 image padded to 32x32, then flipped/turned with its target
    assert int(ignored.sum()) == 32 * 32 - 20 * 28 and (images[1][:, ignored] == 0).all()
    assert not (targets[0] == IGNORE).any() and not (targets[2] == IGNORE).any()
    whole = SegmentationSamples(dataset, MaskEncoder("binary", 1))  # validation: whole images padded by collate
    images, targets = next(iter(DataLoader(whole, batch_size=3, collate_fn=pad_collate(16))))
    assert images.shape == (3, 3, 64, 64) and (targets[1, :, 20:] == IGNORE).all()
    assert targets[1, :, :20, :28].ge(0).all() and targets[2].ge(0).all()
