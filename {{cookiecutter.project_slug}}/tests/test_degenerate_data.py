"""Data that degenerates where a formula needs more: a last batch of one sample for BatchNorm, a band of zero width
for the normalisation. Each is handled with one line that says what was done, or refused with one line."""

import importlib
import logging

import pytest
import torch
from torch.utils.data import TensorDataset

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.data import build_loaders, lone_last_batch
from training.sanity_checks import SanityCheckError

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
