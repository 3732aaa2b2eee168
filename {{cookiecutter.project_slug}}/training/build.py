"""Build a run's parts from the config: datasets, loaders, model, optimizer, scheduler, loss, precision.

Every routine builds through these functions, so that the same config gives the same parts whatever the routine.
"""

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, random_split

from config.serialize import ConfigError
from utils.data.images import DataError

LOGGER = logging.getLogger("project")
# The argument that sets a schedule's length in epochs, for torch's schedulers that have one. Left out of
# SCHEDULER_CONFIG, it is EPOCHS; set to something else, the run warns (the lr would restart or stop early).
SCHEDULE_LENGTH = {
    torch.optim.lr_scheduler.CosineAnnealingLR: "T_max",
    torch.optim.lr_scheduler.LinearLR: "total_iters",
    torch.optim.lr_scheduler.PolynomialLR: "total_iters",
    torch.optim.lr_scheduler.ConstantLR: "total_iters",
}


def instantiate(config: dict[str, Any], key: str, *args: Any, **extra: Any) -> Any:
    """``config[key](*args, **config[key + "_CONFIG"], **extra)``; arguments it refuses are a ConfigError naming key.

    A wrong keyword or value (``--set OPTIMIZER_CONFIG.betas=3``) is the user's to fix: one line that says where,
    rather than a traceback from inside torch.
    """
    factory, kwargs = config[key], {**config[f"{key}_CONFIG"], **extra}
    try:
        return factory(*args, **kwargs)
    except (ConfigError, DataError):  # they say what is wrong already
        raise
    except (TypeError, ValueError) as err:
        name = getattr(factory, "__qualname__", repr(factory))
        raise ConfigError(f"{key}={name} does not take {key}_CONFIG={kwargs!r}: {err}") from err


class Transformed(Dataset):
    """Another dataset's samples through a paired ``transform(image, mask)`` (training augmentation)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.dataset[index])


def build_datasets(config: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """Training and validation datasets: VAL_DATASET if given, else a seeded VAL_FRACTION split of DATASET."""
    dataset = instantiate(config, "DATASET")
    if config["VAL_DATASET"] is not None:
        train_set, val_set = dataset, instantiate(config, "VAL_DATASET")
    else:
        n_val = round(len(dataset) * config["VAL_FRACTION"])
        if not 0 < n_val < len(dataset):
            raise ConfigError(
                f"VAL_FRACTION={config['VAL_FRACTION']} of {len(dataset)} samples leaves an empty training or "
                "validation set"
            )
        generator = torch.Generator().manual_seed(config["SEED"])
        train_set, val_set = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    if config["TRAIN_TRANSFORM"] is not None:
        train_set = Transformed(train_set, config["TRAIN_TRANSFORM"])
    return train_set, val_set


def build_loaders(
    config: dict[str, Any], device: torch.device, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, DataLoader]:
    """DataLoaders over :func:`build_datasets`; call :func:`set_epoch` before each training epoch.

    With several processes each loads its own shard, in batches of DATA_LOADER_CONFIG's batch_size (per process).
    Training shards are padded to equal length (DDP needs the same number of steps on every rank); validation
    shards are not, so that no sample counts twice.
    """
    train_set, val_set = build_datasets(config)
    kwargs = {"pin_memory": device.type == "cuda", **config["DATA_LOADER_CONFIG"]}
    try:  # DataLoader checks its arguments (batch_size=0, num_workers=-1): the user's to fix
        if world_size == 1:
            train_loader = DataLoader(train_set, shuffle=True, generator=torch.Generator(), **kwargs)
        else:
            sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True)
            train_loader = DataLoader(train_set, sampler=sampler, generator=torch.Generator(), **kwargs)
            val_set = Subset(val_set, range(rank, len(val_set), world_size))  # type: ignore[arg-type]
        return train_loader, DataLoader(val_set, shuffle=False, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"DATA_LOADER_CONFIG={config['DATA_LOADER_CONFIG']!r}: {err}") from None


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


def memory_format(config: dict[str, Any]) -> torch.memory_format:
    """Channels-last for the model's weights and image batches if CHANNELS_LAST."""
    return torch.channels_last if config["CHANNELS_LAST"] else torch.preserve_format


def build_model(config: dict[str, Any], device: torch.device) -> nn.Module:
    """MODEL(**MODEL_CONFIG) on ``device``, in the memory format of CHANNELS_LAST (not compiled yet)."""
    return instantiate(config, "MODEL").to(device, memory_format=memory_format(config))


def compile_model(config: dict[str, Any], model: nn.Module) -> None:
    """COMPILE: compile the model in place (``nn.Module.compile``), so that it stays the same object for every
    framework and its state_dict keeps plain keys (no ``_orig_mod.``) for checkpoints."""
    if config["COMPILE"] is not False:
        model.compile(**(config["COMPILE"] if isinstance(config["COMPILE"], dict) else {}))


def build_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """OPTIMIZER over the model's parameters."""
    return instantiate(config, "OPTIMIZER", model.parameters())


def build_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """OneCycleLR for ONE_CYCLE (stepped every batch), else SCHEDULER (stepped every epoch), or None.

    A schedule's length follows EPOCHS unless SCHEDULER_CONFIG sets it; set to another value, one warning.
    """
    if config["ONE_CYCLE"] is not None:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, total_steps=config["EPOCHS"] * steps_per_epoch, **config["ONE_CYCLE"]
        )
    if config["SCHEDULER"] is None:
        return None
    length = SCHEDULE_LENGTH.get(config["SCHEDULER"])
    if length in config["SCHEDULER_CONFIG"] and not config["SCHEDULER_CONFIG"][length] >= 1:
        raise ConfigError(
            f"SCHEDULER_CONFIG.{length} must be >= 1 (epochs), got {config['SCHEDULER_CONFIG'][length]!r}"
        )
    if length is None or length not in config["SCHEDULER_CONFIG"]:
        return instantiate(config, "SCHEDULER", optimizer, **({length: config["EPOCHS"]} if length else {}))
    if config["SCHEDULER_CONFIG"][length] != config["EPOCHS"]:
        LOGGER.warning(
            "SCHEDULER_CONFIG.%s=%s but EPOCHS=%s: the schedule does not end with the run "
            "(leave %s out of SCHEDULER_CONFIG to follow EPOCHS)",
            length, config["SCHEDULER_CONFIG"][length], config["EPOCHS"], length,
        )  # fmt: skip
    return instantiate(config, "SCHEDULER", optimizer)


def build_loss(config: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LOSS as a callable: a function as it is; a class (an nn.Module) or a partial of one called without arguments."""
    loss = config["LOSS"]
    if isinstance(loss, type) or (hasattr(loss, "func") and isinstance(loss.func, type)):
        return loss()
    return loss


def autocast_dtype(config: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype of MIXED_PRECISION on ``device``: fp16 on CUDA, bf16 elsewhere, None for full precision."""
    setting = config["MIXED_PRECISION"]
    if setting is False:
        return None
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError(f"MIXED_PRECISION='fp16' needs a CUDA device (this run uses {device}); use 'bf16'")
    if setting == "fp16" or (setting is True and device.type == "cuda"):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The autocast context of the forward pass (disabled when ``dtype`` is None)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler, active only for fp16 (bf16 has the range of fp32 and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
