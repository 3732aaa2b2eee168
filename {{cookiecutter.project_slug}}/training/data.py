"""The data of a run from the config: the train/validation split, normalisation statistics, datasets and loaders.

Every routine gets its loaders here, so that one config gives the same batches whatever the routine. A sample goes
DATASET -> mask encoded for TASK -> no-data pixels ignored -> normalised -> PATCH_SIZE patch and TRAIN_TRANSFORM
(training only) -> batches padded to a common size that the model divides (utils/data/samples.py, transforms.py).
"""

import json
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, random_split

from config.serialize import ConfigError, to_jsonable
from training import distributed
from training.build import LOGGER, instantiate
from utils.data.fingerprint import ClassCounts, rare_class_line
from utils.data.folder import group_names
from utils.data.images import DataError
from utils.data.kfold import assign_folds, class_presence
from utils.data.normalization import compute_statistics
from utils.data.samples import SegmentationSamples
from utils.data.targets import MaskEncoder
from utils.data.transforms import RandomPatch, pad_collate


def split_dataset(config: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """The raw training and validation sets: VAL_DATASET if given, else VAL_FRACTION of DATASET, split with SEED;
    with VAL_GROUPS whole groups (scenes) go to one side, so that neighbouring tiles never sit on both. With FOLDS,
    fold FOLD validates (:func:`fold_split`)."""
    dataset = instantiate(config, "DATASET")
    if config["VAL_DATASET"] is not None:
        return dataset, instantiate(config, "VAL_DATASET")
    if config["FOLDS"] is not None:
        return fold_split(config, dataset)
    fraction, generator = config["VAL_FRACTION"], torch.Generator().manual_seed(config["SEED"])
    if config["VAL_GROUPS"] is None:
        n_val = round(len(dataset) * fraction)
        if not 0 < n_val < len(dataset):
            raise ConfigError(
                f"VAL_FRACTION={fraction} of {len(dataset)} samples leaves an empty training or validation set"
            )
        return tuple(random_split(dataset, [len(dataset) - n_val, n_val], generator=generator))  # type: ignore[return-value]
    groups = np.array(group_names(dataset, config["VAL_GROUPS"]))
    names = sorted(set(groups))
    order = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    # Whole groups in a seeded order, each taken while the validation set stays within VAL_FRACTION of the samples
    # (the first one in any case).
    val_groups, n_val = set(), 0
    for name in order:
        size = int((groups == name).sum())
        if not val_groups or n_val + size <= fraction * len(dataset):
            val_groups.add(name)
            n_val += size
    is_val = np.isin(groups, list(val_groups))
    if is_val.all() or not is_val.any():
        raise ConfigError(f"VAL_GROUPS found {len(names)} group(s): too few to split off VAL_FRACTION={fraction}")
    LOGGER.info(
        "VAL_GROUPS: %d of %d groups (%d of %d samples) validate: %s",
        len(val_groups), len(names), int(is_val.sum()), len(dataset), ", ".join(sorted(val_groups)),
    )  # fmt: skip
    return Subset(dataset, np.flatnonzero(~is_val).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())


def fold_split(config: dict[str, Any], dataset: Dataset) -> tuple[Dataset, Dataset]:
    """FOLDS: fold FOLD of DATASET validates, the other folds train (utils/data/kfold.py: whole VAL_GROUPS groups
    per fold, balanced by class presence, seeded); VAL_FRACTION does not apply. The folds are made once a process.

    Raises:
        ConfigError: FOLD is None (only train.py --folds trains every fold), or fewer samples or groups than FOLDS.
    """
    fold, (folds, _) = config["FOLD"], fold_assignment(config, dataset)
    if fold is None:
        raise ConfigError(f"FOLDS={config['FOLDS']} needs FOLD, the fold to validate on; train.py --folds trains each")
    is_val = folds == fold
    LOGGER.info(
        "fold %d of %d validates: %d of %d samples (VAL_FRACTION does not apply: the folds decide)",
        fold, config["FOLDS"], int(is_val.sum()), len(dataset),
    )  # fmt: skip
    return Subset(dataset, np.flatnonzero(~is_val).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())


# What decides a split into folds; the folds of one process's cross-validation are made once, on its first fold.
SPLIT_KEYS = ("DATASET", "DATASET_CONFIG", "VAL_GROUPS", "FOLDS", "SEED", "TASK", "CLASSES", "MASK_VALUES",
              "IGNORE_INDEX", "MASK_THRESHOLD")  # fmt: skip
_FOLDS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def fold_assignment(config: dict[str, Any], dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The fold of every sample of ``dataset`` (DATASET), int64 [N] in 0..FOLDS-1 (see :func:`fold_split`), and the
    class presence it balanced, bool [N, K] (utils/data/kfold.py: binary K=1, the foreground)."""
    key = json.dumps(to_jsonable({key: config[key] for key in SPLIT_KEYS}), sort_keys=True)
    if key not in _FOLDS:
        groups = group_names(dataset, config["VAL_GROUPS"]) if config["VAL_GROUPS"] is not None else None
        presence = class_presence(dataset, mask_encoder(config))  # a pass over the masks
        try:
            _FOLDS[key] = assign_folds(presence, groups, config["FOLDS"], config["SEED"]), presence
        except ValueError as err:
            raise ConfigError(str(err)) from None
    return _FOLDS[key]


def mask_encoder(config: dict[str, Any]) -> MaskEncoder:
    """The MaskEncoder of TASK, CLASSES, MASK_VALUES, IGNORE_INDEX and MASK_THRESHOLD (ConfigError for settings
    that conflict)."""
    task, num_classes = config["TASK"], 2 if config["TASK"] == "binary" else len(config["CLASSES"])  # binary: 0, 1
    try:
        return MaskEncoder(task, num_classes, config["MASK_VALUES"], config["IGNORE_INDEX"], config["MASK_THRESHOLD"])
    except ValueError as err:
        raise ConfigError(f"MASK_VALUES / IGNORE_INDEX: {err}") from None


def normalization_statistics(
    config: dict[str, Any], train_set: Dataset, source: dict[str, Any] | None, encoder: MaskEncoder
) -> Any:
    """NORMALIZATION's per-band statistics: from ``source`` (a checkpoint: the resumed run's own, or INIT_FROM's
    for ``init``), else computed on the training set (up to 256 samples, seeded). That pass also counts the class
    pixels of its samples (``encoder`` encodes the masks) and warns of a rare class trained without a remedy."""
    if source is not None:
        return source.get("normalization")
    if config["NORMALIZATION"] is None:  # no pass, so no class counts (never a pass of their own: data_report.py)
        return None

    def compute() -> Any:  # rank 0 reads the samples and sends the figures: files read once, normalised alike
        counts = ClassCounts(encoder, train_set)
        stats = compute_statistics(
            train_set, config["NORMALIZATION"], nodata=config["NODATA"], seed=config["SEED"], on_sample=counts
        )
        if line := rare_class_line(counts, config):
            LOGGER.warning(line)
        return stats

    return distributed.broadcast_object(distributed.on_rank_zero(compute, (DataError,)))


def build_datasets(config: dict[str, Any], source: dict[str, Any] | None = None) -> tuple[Dataset, Dataset, Any]:
    """Training and validation datasets of (image [C, H, W] float32, target) pairs, and the normalisation
    statistics they apply (``source``: the checkpoint to take those from, see :func:`normalization_statistics`)."""
    train_set, val_set = split_dataset(config)
    encoder = mask_encoder(config)
    stats = normalization_statistics(config, train_set, source, encoder)
    patch = RandomPatch(config["PATCH_SIZE"], config["PATCH_FOREGROUND"]) if config["PATCH_SIZE"] else None
    nodata = config["NODATA"]
    train = SegmentationSamples(train_set, encoder, stats, nodata, patch, config["TRAIN_TRANSFORM"])
    return train, SegmentationSamples(val_set, encoder, stats, nodata), stats


def build_loaders(
    config: dict[str, Any],
    datasets: tuple[Dataset, Dataset],
    device: torch.device,
    divisor: int = 1,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """DataLoaders over ``datasets`` (training, validation); call :func:`set_epoch` before each training epoch.

    Batches are padded to a common size divisible by ``divisor`` (the model's), padded pixels ignored, so that
    images of any and mixed sizes train and validate whole. With several processes each loads its own shard, in
    batches of DATA_LOADER_CONFIG's batch_size (per process). Training shards are padded to equal length (DDP needs
    the same number of steps on every rank); validation shards are not, so that no sample counts twice.

    A last training batch of one sample is dropped (one line says so): BatchNorm cannot train on one value per
    channel, which a single sample gives wherever a feature map is 1x1. The shuffle puts another sample last each
    epoch, so every sample still trains; DATA_LOADER_CONFIG's own ``drop_last`` wins (validation never drops).
    """
    train_set, val_set = datasets
    if len(train_set) == 0 or len(val_set) < world_size:  # a dataset of the user's own, or more processes than samples
        raise ConfigError(
            f"the training set has {len(train_set)} sample(s) and the validation set {len(val_set)}; training needs "
            f"1 at least and validation {world_size} (one a process): give DATASET or VAL_DATASET more samples, or "
            "raise VAL_FRACTION"
        )
    kwargs = {"pin_memory": device.type == "cuda", "collate_fn": pad_collate(divisor), **config["DATA_LOADER_CONFIG"]}
    per_process, batch_size = -(-len(train_set) // world_size), kwargs.get("batch_size", 1)
    train_kwargs = {"drop_last": lone_last_batch(per_process, batch_size), **kwargs}
    if train_kwargs["drop_last"] and rank == 0 and "drop_last" not in kwargs:
        LOGGER.info(
            "the last training batch of each epoch would hold 1 sample (%d a process, batch_size %d): dropped, as "
            "BatchNorm cannot train on one sample; the shuffle drops another one each epoch", per_process, batch_size,
        )  # fmt: skip
    try:  # DataLoader checks its arguments (batch_size=0, num_workers=-1): the user's to fix
        if world_size == 1:
            train_loader = DataLoader(train_set, shuffle=True, generator=torch.Generator(), **train_kwargs)
        else:
            sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True)
            train_loader = DataLoader(train_set, sampler=sampler, generator=torch.Generator(), **train_kwargs)
            val_set = Subset(val_set, range(rank, len(val_set), world_size))  # type: ignore[arg-type]
        if len(train_loader) == 0:  # drop_last of the user's own, with fewer samples than a batch
            raise ValueError(f"{per_process} training sample(s) a process make no whole batch: lower batch_size")
        return train_loader, DataLoader(val_set, shuffle=False, **{**kwargs, "drop_last": False})  # every sample
    except (TypeError, ValueError) as err:
        raise ConfigError(f"DATA_LOADER_CONFIG={config['DATA_LOADER_CONFIG']!r}: {err}") from None


def lone_last_batch(per_process: int, batch_size: Any) -> bool:
    """Whether a process's last training batch holds one sample after full ones. DistributedSampler gives every
    process ceil(samples / processes) samples, so all processes drop it alike (DDP needs as many steps on each).
    Batches of one throughout (batch_size 1, or one sample a process) leave nothing to drop: see sanity_checks."""
    return isinstance(batch_size, int) and 2 <= batch_size < per_process and per_process % batch_size == 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch``'s training order: (SEED, epoch) alone, whichever generator draws it."""
    return seed * 100_003 + epoch


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Seed the training order of ``epoch`` with (SEED, epoch) alone, so that a resumed run sees the same batches.

    A new generator rather than a reseeded one: an iterator that a framework keeps from the previous epoch (Ignite
    draws once more from it to see it end) then cannot take a draw from this epoch's sequence.
    """
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    loader.generator = generator
    if isinstance(loader.sampler, torch.utils.data.RandomSampler):
        loader.sampler.generator = generator
    elif isinstance(loader.sampler, DistributedSampler):
        # It permutes with seed + epoch: the permutation one process draws, dealt out to the ranks in turn.
        loader.sampler.seed = epoch_seed(seed, 0)
        loader.sampler.set_epoch(epoch)
