"""Build a run's parts from the config: model, optimizer, scheduler, loss, metrics, precision (data: data.py).

Every routine builds through these functions, so that the same config gives the same parts whatever the routine.
"""

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from config.checks import checkpoint_direction, reads_metric, signature_problem
from config.serialize import ConfigError
from utils.data.images import DataError
from utils.metric_sums import MetricSums
from utils.metrics import with_task

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
    if length is None:
        return build_unsized_scheduler(config, optimizer)
    if length in config["SCHEDULER_CONFIG"] and not config["SCHEDULER_CONFIG"][length] >= 1:
        raise ConfigError(
            f"SCHEDULER_CONFIG.{length} must be >= 1 (epochs), got {config['SCHEDULER_CONFIG'][length]!r}"
        )
    if length not in config["SCHEDULER_CONFIG"]:
        return instantiate(config, "SCHEDULER", optimizer, **{length: config["EPOCHS"]})
    if config["SCHEDULER_CONFIG"][length] != config["EPOCHS"]:
        LOGGER.warning(
            "SCHEDULER_CONFIG.%s=%s but EPOCHS=%s: the schedule does not end with the run "
            "(leave %s out of SCHEDULER_CONFIG to follow EPOCHS)",
            length, config["SCHEDULER_CONFIG"][length], config["EPOCHS"], length,
        )  # fmt: skip
    return instantiate(config, "SCHEDULER", optimizer)


def build_unsized_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """SCHEDULER without a length. One stepped with CHECKPOINT_METRIC (ReduceLROnPlateau, or any whose ``step`` takes
    a value) gets CHECKPOINT_MODE's direction as its ``mode`` unless SCHEDULER_CONFIG sets one (config/checks.py
    refuses one against that direction): torch's default mode 'min' cuts the lr of a run whose val_dice rises.

    Raises:
        ConfigError: a SCHEDULER function built a scheduler whose ``mode`` contradicts CHECKPOINT_MODE.
    """
    direction, scheduler = checkpoint_direction(config), config["SCHEDULER"]
    unset = "mode" not in {**getattr(scheduler, "keywords", {}), **config["SCHEDULER_CONFIG"]}
    give_mode = reads_metric(scheduler) and unset and signature_problem(scheduler, {"mode": direction}, 1) is None
    built = instantiate(config, "SCHEDULER", optimizer, **({"mode": direction} if give_mode else {}))
    if reads_metric(built) and getattr(built, "mode", direction) != direction:
        raise ConfigError(
            f"SCHEDULER built a scheduler in mode {built.mode!r}, but it reads CHECKPOINT_METRIC "
            f"{config['CHECKPOINT_METRIC']!r} in mode {direction!r}: build it with mode={direction!r}"
        )
    return built


def step_epoch_scheduler(scheduler: Any, val: dict[str, float], metric: str) -> None:
    """One epoch's step of an epoch scheduler (None: nothing). One that reads a metric (ReduceLROnPlateau) reads
    ``val[metric]`` (CHECKPOINT_METRIC); where that value is not finite (NaN: a metric undefined on this epoch's
    validation set) it is not stepped, so that the epoch counts neither as an improvement nor against its patience,
    and one info line says so."""
    if scheduler is None:
        return
    if not reads_metric(scheduler):
        scheduler.step()
    elif math.isfinite(val[metric]):
        scheduler.step(val[metric])
    else:
        LOGGER.info("%s is %s this epoch: %s not stepped", metric, val[metric], type(scheduler).__name__)


def build_loss(config: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LOSS with LOSS_CONFIG (and TASK, when it takes one): a class (an nn.Module) is instantiated, a function
    gets them bound; either way ``loss(logits, target) -> scalar``."""
    loss, kwargs = config["LOSS"], config["LOSS_CONFIG"]
    if isinstance(loss, type) or isinstance(getattr(loss, "func", None), type):
        return with_task(loss, config["TASK"])(**kwargs)
    return functools.partial(with_task(loss, config["TASK"]), **kwargs) if kwargs else with_task(loss, config["TASK"])


def build_metrics(config: dict[str, Any]) -> MetricSums:
    """METRICS as the sums and counts that validation adds up: ``val_<name>`` (the mean over classes), its pooled
    value ``val_<name>_pooled`` and, but for a binary task, ``val_<name>_<class>`` (utils/metric_sums.py)."""
    return MetricSums(config["METRICS"], config["CLASSES"], config["TASK"], prefix="val_")


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
