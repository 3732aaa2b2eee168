"""Per-band statistics over valid pixels, and the normalisation they define."""

import json

import numpy as np
import pytest
import torch

from utils.data.images import DataError
from utils.data.normalization import compute_statistics, invalid_pixels, normalize


class Images(torch.utils.data.Dataset):
    """In-memory (image, mask) samples; counts how often each is read."""

    def __init__(self, images):
        self.images = [torch.as_tensor(image, dtype=torch.float32) for image in images]
        self.reads = [0] * len(self.images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.reads[index] += 1
        image = self.images[index]
        return image, torch.zeros(1, *image.shape[-2:], dtype=torch.int64)

    def __repr__(self):
        return f"Images({len(self)})"


def twelve_bit_set(count=6, size=32, seed=0):
    """3-band 16-bit files holding 12-bit data, read as /65535: values up to 0.0625, band means far apart."""
    rng = np.random.default_rng(seed)
    offsets = np.array([300.0, 1500.0, 3000.0])[:, None, None]
    return [((offsets + rng.normal(0, 200, (3, size, size))).clip(0, 4095).round() / 65535) for _ in range(count)]


def test_meanstd_of_12_bit_data_normalises_to_mean_0_std_1():
    dataset = Images(twelve_bit_set())
    stats = compute_statistics(dataset, "meanstd")
    assert stats["method"] == "meanstd" and len(stats["mean"]) == len(stats["std"]) == 3
    assert json.loads(json.dumps(stats)) == stats  # goes into the checkpoint as is
    batch = normalize(torch.stack(dataset.images), stats)  # [N, C, H, W]
    assert batch.dtype == torch.float32
    assert torch.allclose(batch.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(batch.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    single = normalize(dataset.images[0], stats)  # [C, H, W] the same way
    assert torch.allclose(single, batch[0])


def test_percentile_maps_p1_p99_to_0_1():
    dataset = Images(twelve_bit_set(count=4, size=64))
    stats = compute_statistics(dataset, "percentile")
    assert stats["percentiles"] == [1.0, 99.0] and len(stats["low"]) == 3
    values = torch.stack(dataset.images).transpose(0, 1).reshape(3, -1).double()
    expected = torch.quantile(values, torch.tensor([0.01, 0.99], dtype=torch.float64), dim=1)
    # a subsample of 2**18 pixels per band over all images: here every pixel, so exact
    assert np.allclose(stats["low"], expected[0].numpy()) and np.allclose(stats["high"], expected[1].numpy())
    normalised = normalize(dataset.images[0], stats)
    inside = ((normalised >= 0) & (normalised <= 1)).float().mean().item()
    assert 0.9 < inside < 0.99


def test_percentile_subsamples_large_images():
    """Big images: a bounded subsample per image, still close to the true percentiles."""
    generator = torch.Generator().manual_seed(1)
    dataset = Images([torch.rand(2, 512, 512, generator=generator) * 100 for _ in range(3)])
    stats = compute_statistics(dataset, "percentile")
    assert np.allclose(stats["low"], [1.0, 1.0], atol=0.2) and np.allclose(stats["high"], [99.0, 99.0], atol=0.2)


def test_nan_and_nodata_pixels_are_left_out():
    image = torch.full((2, 4, 4), 10.0)
    image[:, 0, :2] = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).T  # distinct values in row 0, columns 0-1
    image[0, 3, 3] = float("nan")
    image[1, 2, 2] = -9999.0
    image[0, 1, 1] = float("inf")
    stats = compute_statistics(Images([image]), "meanstd", nodata=-9999.0)
    # band 0: 14 valid pixels (NaN, inf left out), band 1: 15 valid pixels (-9999 left out)
    band0 = torch.tensor([1.0, 5.0] + [10.0] * 12)
    band1 = torch.tensor([3.0, 7.0] + [10.0] * 13)
    assert np.allclose(stats["mean"], [band0.mean(), band1.mean()])
    assert np.allclose(stats["std"], [band0.std(correction=0), band1.std(correction=0)])
    bad = invalid_pixels(image, -9999.0)
    assert bad.dtype == torch.bool and bad.shape == (4, 4)
    assert bad.nonzero().tolist() == [[1, 1], [2, 2], [3, 3]]
    assert invalid_pixels(image, None).nonzero().tolist() == [[1, 1], [3, 3]]


def test_band_without_valid_pixel_is_refused():
    image = torch.ones(3, 4, 4)
    image[1] = float("nan")
    with pytest.raises(DataError, match=r"band 1 has no valid pixel .*in the 1 images used from Images\(1\)"):
        compute_statistics(Images([image]), "meanstd")
    image[1] = -1.0
    with pytest.raises(DataError, match="NODATA=-1.0"):
        compute_statistics(Images([image]), "percentile", nodata=-1.0)


def test_max_samples_is_a_seeded_choice():
    dataset = Images([torch.full((1, 2, 2), float(i)) for i in range(20)])
    first = compute_statistics(dataset, "meanstd", max_samples=5, seed=3)
    assert sum(dataset.reads) == 5 and max(dataset.reads) == 1
    assert compute_statistics(dataset, "meanstd", max_samples=5, seed=3) == first
    assert compute_statistics(dataset, "meanstd", max_samples=5, seed=4) != first


def test_none_and_bad_arguments():
    dataset = Images([torch.ones(1, 2, 2)])
    assert compute_statistics(dataset, None) is None
    image = torch.rand(1, 2, 2)
    assert normalize(image, None) is image
    with pytest.raises(ValueError, match="NORMALIZATION must be one of"):
        compute_statistics(dataset, "minmax")
    with pytest.raises(DataError, match="empty"):
        compute_statistics(Images([]), "meanstd")
    with pytest.raises(DataError, match="3 bands but the normalisation statistics 1"):
        normalize(torch.ones(3, 2, 2), {"method": "meanstd", "mean": [0.0], "std": [1.0]})


def test_constant_band_is_shifted_not_blown_up():
    stats = compute_statistics(Images([torch.full((1, 3, 3), 0.5)]), "meanstd")
    assert stats["std"] == [0.0]
    assert torch.equal(normalize(torch.full((1, 3, 3), 0.5), stats), torch.zeros(1, 3, 3))
