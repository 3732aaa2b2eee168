"""Data that degenerates where a formula needs more: a last batch of one sample for BatchNorm, a band of zero width
for the normalisation. Each is handled with one line that says what was done, or refused with one line."""

import importlib
import logging

import pytest
import torch
from torch.utils.data import TensorDataset

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.serialize import ConfigError
from training.data import build_loaders, lone_last_batch
from training.sanity_checks import SanityCheckError
from utils.data.normalization import compute_statistics, normalize

ROUTINE = importlib.import_module(f"training.{ROUTINES[0]}_training")
# 8x8 images through a U-Net of depth 3 (divisor 8): the bottleneck is 1x1, where BatchNorm needs 2 samples.
ONE_BY_ONE = {"MODEL_CONFIG": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 3}}


def test_a_lone_last_batch_is_one_sample_after_full_batches_per_process() -> None:
    assert lone_last_batch(8, 7) and lone_last_batch(9, 4) and lone_last_batch(5, 2)
    assert not lone_last_batch(8, 4) and not lone_last_batch(10, 4)  # no remainder, or one of 2 samples
    assert not lone_last_batch(1, 4) and not lone_last_batch(9, 1)  # batches of one throughout: nothing to drop
    assert not lone_last_batch(9, None)  # DataLoader refuses that itself


@pytest.mark.parametrize(("samples", "world_size", "batches"), [(9, 1, 2), (10, 1, 3), (9, 2, 1), (11, 2, 2)])
def test_each_process_drops_a_last_batch_of_one(samples: int, world_size: int, batches: int) -> None:
    """9 samples on 2 processes: 5 each (DistributedSampler pads), batches of 4 and then 1 sample, which is dropped
    on every rank alike; 11 on 2: 6 each, batches of 4 and 2, nothing dropped. Validation never drops."""
    data = TensorDataset(torch.zeros(samples, 1, 8, 8), torch.zeros(samples, 1, 8, 8))
    config = {"DATA_LOADER_CONFIG": {"batch_size": 4}}
    for rank in range(world_size):
        train, val = build_loaders(config, (data, data), torch.device("cpu"), 8, rank, world_size)
        assert len(train) == batches and len(list(train)) == batches
        assert all(len(images) > 1 for images, _ in train)
        assert sum(len(images) for images, _ in val) == len(range(rank, samples, world_size))
    assert build_loaders({"DATA_LOADER_CONFIG": {"batch_size": 4, "drop_last": False}}, (data, data),
                         torch.device("cpu"))[0].drop_last is False  # fmt: skip  # the user's own setting wins


def test_a_last_batch_of_one_trains_where_batchnorm_meets_a_1x1_map(
    tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """8 training samples in batches of 7: the second batch of one sample would reach BatchNorm as [1, C, 1, 1]
    ("Expected more than 1 value per channel when training", a traceback before)."""
    tiny_config.update(ONE_BY_ONE, DATASET_CONFIG={"n_samples": 10, "size": 8, "seed": 0}, EPOCHS=1)
    tiny_config["DATA_LOADER_CONFIG"] = {"batch_size": 7, "num_workers": 0}
    with caplog.at_level(logging.INFO, logger="project"):
        result = ROUTINE.train(tiny_config, global_config)
    assert result.status == "completed"
    assert "would hold 1 sample (8 a process, batch_size 7): dropped" in caplog.text


@pytest.mark.parametrize("case", ["batch_size 1", "one training sample"])
def test_batches_of_one_throughout_are_refused_in_one_line_before_training(
    case: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiny_config.update(ONE_BY_ONE, EPOCHS=1)
    if case == "batch_size 1":
        tiny_config.update(DATASET_CONFIG={"n_samples": 4, "size": 8, "seed": 0})
        tiny_config["DATA_LOADER_CONFIG"] = {"batch_size": 1, "num_workers": 0}
    else:  # 2 samples, one of them validates
        tiny_config.update(DATASET_CONFIG={"n_samples": 2, "size": 8, "seed": 0}, VAL_FRACTION=0.5)
    with pytest.raises(SanityCheckError, match=r"'batch of one' failed .* \(1, 1, 8, 8\) .*batch_size >= 2"):
        ROUTINE.train(tiny_config, global_config)
    assert not global_config.LOG_DIR.exists()


@pytest.mark.parametrize(("samples", "world_size"), [((16, 0), 1), ((9, 1), 2), ((0, 4), 1)])
def test_an_empty_validation_set_or_shard_is_refused_in_one_line(samples: tuple[int, int], world_size: int) -> None:
    """An own dataset of no samples, or fewer validation samples than processes (a rank without a shard stopped at
    its first batch with a StopIteration traceback, and the other rank with gloo's "Connection closed")."""
    train, val = (TensorDataset(torch.zeros(n, 1, 8, 8), torch.zeros(n, 1, 8, 8)) for n in samples)
    with pytest.raises(ConfigError, match=rf"has {samples[0]} sample\(s\) and the validation set {samples[1]};.*"
                       rf"validation {world_size} \(one a process\)"):  # fmt: skip
        build_loaders({"DATA_LOADER_CONFIG": {}}, (train, val), torch.device("cpu"), 1, 0, world_size)


class Bands(torch.utils.data.Dataset):
    """Images of 2 bands (``[2, 10, 10]``): band 0 random, band 1 as given."""

    def __init__(self, second: list[torch.Tensor]) -> None:
        self.second = second

    def __len__(self) -> int:
        return len(self.second)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.stack([torch.rand(10, 10, generator=torch.Generator().manual_seed(index)), self.second[index]])
        return image, torch.zeros(1, 10, 10, dtype=torch.int64)


def test_a_constant_band_is_shifted_not_divided_by_an_epsilon(caplog: pytest.LogCaptureFixture) -> None:
    """Constant (0.5) in the training images, 0.51 at prediction: 0.01 after the shift, not 0.01 / 1e-6 = 10000."""
    for method, shifted in (("meanstd", "mean"), ("percentile", "low")):
        with caplog.at_level(logging.WARNING, logger="project"):
            stats = compute_statistics(Bands([torch.full((10, 10), 0.5)] * 3), method)
        assert stats[shifted][1] == pytest.approx(0.5)
        assert f"NORMALIZATION '{method}': band 1 is constant (0.5) in the 3 training image(s) used" in caplog.text
        assert "band 0" not in caplog.text
        caplog.clear()
        image = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 0.51)])
        assert normalize(image, stats)[1].allclose(torch.full((4, 4), 0.01), atol=1e-6)


def test_percentiles_of_zero_width_in_a_sparse_band_widen_to_its_range(caplog: pytest.LogCaptureFixture) -> None:
    """A fluorescence-like band: 0 in over 99 % of the pixels, one at 0.8. p1 = p99 = 0, whose width 0 made 0.8
    into 0.8 / 1e-6; now the band's minimum and maximum (0 and 0.8) are its range: 0.8 -> 1."""
    sparse = torch.zeros(10, 10)
    sparse[0, 0] = 0.8
    with caplog.at_level(logging.WARNING, logger="project"):
        stats = compute_statistics(Bands([sparse, torch.zeros(10, 10), torch.zeros(10, 10)]), "percentile")
    assert stats["low"][1] == 0.0 and stats["high"][1] == pytest.approx(0.8)
    assert "band 1 has its 1st and 99th percentiles at 0" in caplog.text and "0 to 0.8" in caplog.text
    assert "constant" not in caplog.text
    assert normalize(torch.stack([sparse, sparse]), stats)[1, 0, 0] == pytest.approx(1.0)


def test_drop_last_of_ones_own_never_drops_validation_samples_nor_leaves_no_batch() -> None:
    """DATA_LOADER_CONFIG.drop_last=True dropped validation samples too (a metric over fewer samples than the
    set), and with fewer samples than a batch left no batch at all (a StopIteration traceback)."""
    data = TensorDataset(torch.zeros(10, 1, 8, 8), torch.zeros(10, 1, 8, 8))
    config = {"DATA_LOADER_CONFIG": {"batch_size": 4, "drop_last": True}}
    train, val = build_loaders(config, (data, data), torch.device("cpu"))
    assert len(train) == 2 and sum(len(images) for images, _ in val) == 10
    config["DATA_LOADER_CONFIG"]["batch_size"] = 16
    with pytest.raises(ConfigError, match=r"DATA_LOADER_CONFIG=.*: 10 training sample\(s\) a process make no whole"):
        build_loaders(config, (data, data), torch.device("cpu"))
