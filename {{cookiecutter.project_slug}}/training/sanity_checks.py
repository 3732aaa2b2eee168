"""Checks before the first epoch. On one batch: the images' bands against the model's input, its output against
TASK and CLASSES, the loss and metrics (finite, and given the task they are written for), and a save/load round
trip; a failed check is a SanityCheckError that names it: one line, before anything is trained. On the validation
targets: the class of CHECKPOINT_METRIC occurs (else the metric is never defined: a ConfigError), and a warning
names the other classes that never occur (their columns are NaN, or 0 where the model predicts them).
"""

import copy
import functools
import io
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from config.serialize import ConfigError
from training import distributed
from training.build import LOGGER, build_model
from utils.losses import one_hot
from utils.metric_sums import MetricSums

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class SanityCheckError(RuntimeError):
    """A check on the first batch failed before training started; the message names the check."""


def sanity_checks(
    config: dict[str, Any],
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    loss_fn: Callable,
    metrics: MetricSums,
    device: torch.device,
) -> None:
    """One batch (images ``[N, C, H, W]``, targets of TASK) through the model: bands, output channels, the loss
    and each metric, and a save/load round trip that gives identical outputs. Runs in eval mode and on a forked
    RNG, so training is exactly as without it.

    Raises:
        SanityCheckError: the first failed check, named, with what to set.
    """
    _check_bands(config, images)
    _check_batch_of_one(model, images)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                logits = model(images)
            except (RuntimeError, ValueError) as err:  # e.g. a convolution given other channels than it expects
                raise SanityCheckError(
                    f"sanity check 'forward pass' failed for images of {tuple(images.shape)} ([N, C, H, W]): "
                    f"{str(err).strip().splitlines()[0]}; make MODEL_CONFIG match the data (in_channels: C)"
                ) from None
            _check_outputs(config, logits, masks)
            functions = {f"metric {name}": functools.partial(metrics.per_sample, name) for name in metrics.metrics}
            for name, function in {"loss": loss_fn, **functions}.items():
                try:
                    value = function(logits.float(), masks)
                except (ValueError, RuntimeError) as err:  # e.g. a binary metric given 3 classes
                    raise SanityCheckError(
                        f"sanity check '{name}' failed for TASK {config['TASK']!r}: {str(err).strip().splitlines()[0]}"
                    ) from None
                if name == "loss" and not torch.isfinite(value).all():
                    raise SanityCheckError(f"sanity check 'finite loss' failed: the first batch's loss is {value}")
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            buffer.seek(0)
            reloaded = build_model(config, device).eval()
            reloaded.load_state_dict(torch.load(buffer, weights_only=True))
            if not torch.equal(reloaded(images), logits):
                raise SanityCheckError(
                    "sanity check 'save/load round trip' failed: the reloaded model gives other outputs "
                    "(is some state kept outside the model's parameters and buffers?)"
                )
    finally:
        model.train(was_training)


def _check_bands(config: dict[str, Any], images: torch.Tensor) -> None:
    """The images' bands against MODEL_CONFIG's in_channels (when the model has that argument)."""
    expected = config["MODEL_CONFIG"].get("in_channels")
    if expected is not None and images.shape[1] != expected:
        raise SanityCheckError(
            f"sanity check 'bands' failed: the images have {images.shape[1]} band(s) but MODEL_CONFIG.in_channels is "
            f"{expected}; set in_channels={images.shape[1]}, or DATASET_CONFIG.channels={expected} to convert them"
        )


def _check_outputs(config: dict[str, Any], logits: torch.Tensor, targets: torch.Tensor) -> None:
    """The model's output channels against TASK and CLASSES, and its height and width against the targets'."""
    task, classes = config["TASK"], config["CLASSES"]
    expected = 1 if task == "binary" else len(classes)
    if logits.shape[1] != expected:
        raise SanityCheckError(
            f"sanity check 'output channels' failed: the model gives {logits.shape[1]} channel(s) but TASK "
            f"{task!r} with CLASSES {classes} needs {expected}; set MODEL_CONFIG.out_channels={expected}"
            + (" (or TASK 'multiclass' with a name per class)" if task == "binary" else "")
        )
    if logits.shape[-2:] != targets.shape[-2:]:
        raise SanityCheckError(
            f"sanity check 'output shape' failed: the model gives {tuple(logits.shape)} ([N, C, H, W]) for targets "
            f"of {tuple(targets.shape)}; a model must keep the height and width of its input"
        )


def check_validation_classes(
    config: dict[str, Any], val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> list[str]:
    """One pass over the validation targets (every rank's shard, summed over the ranks): the classes that never
    occur in them, warned about in one line. Their per-image dice is NaN where nothing of them is predicted and 0
    where something is (utils/metrics.py): a column that tells nothing. The images are read too (a loader gives
    both), on a forked RNG so that training draws what it would have.

    Raises:
        ConfigError: CHECKPOINT_METRIC would never be defined: its class never occurs (for a mean over classes: none
            of them does; binary: no foreground pixel at all), so no epoch could be compared and none kept as best.
    """
    task, classes, metric = config["TASK"], config["CLASSES"], config["CHECKPOINT_METRIC"]
    pixels = torch.zeros(len(classes), dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for _, masks in val_loader:
            truth, valid = one_hot(masks, task, len(classes) if task != "binary" else 1)
            pixels += (truth & valid).sum((0, 2, 3)).double().cpu()
    counts = distributed.sum_over_ranks(pixels.tolist(), device)
    absent = [name for name, count in zip(classes, counts, strict=True) if not count]
    if not absent:
        return absent
    columns = MetricSums(config["METRICS"], classes, task).columns
    needed = columns.get(metric.removeprefix("val_"), (None, []))[1]  # the classes it averages; none for val_loss
    if needed and all(classes[index] in absent for index in needed):
        what = "no foreground pixel" if task == "binary" else f"no pixel of {', '.join(classes[i] for i in needed)}"
        raise ConfigError(
            f"CHECKPOINT_METRIC {metric} is never defined: the validation set has {what}; put images with it into "
            "the validation set (VAL_DATASET, VAL_FRACTION, VAL_GROUPS) or choose another CHECKPOINT_METRIC"
        )
    LOGGER.warning(
        "class(es) %s never occur in the validation set: their metric columns are NaN (undefined) or 0 (predicted)",
        ", ".join(absent),
    )
    return absent


def check_fold_classes(config: dict[str, Any], folds: np.ndarray, presence: np.ndarray) -> None:
    """Before a cross-validation's first fold: CHECKPOINT_METRIC must be defined on every fold's validation images
    (``folds`` [N] each sample's fold, ``presence`` bool [N, K] its classes), the rule of
    :func:`check_validation_classes`, so that no fold is refused after the others have trained.

    Raises:
        ConfigError: a fold validates on images without any of the classes the metric averages.
    """
    classes, metric = config["CLASSES"], config["CHECKPOINT_METRIC"]
    needed = MetricSums(config["METRICS"], classes, config["TASK"]).columns.get(metric.removeprefix("val_"), (0, []))[1]
    for fold in range(config["FOLDS"]):
        if needed and not presence[folds == fold][:, needed].any():
            what = "foreground" if config["TASK"] == "binary" else ", ".join(classes[i] for i in needed)
            raise ConfigError(
                f"CHECKPOINT_METRIC {metric} is never defined on fold {fold}: its validation images have no pixel of "
                f"{what}; use fewer FOLDS, group the images otherwise (VAL_GROUPS) or choose another CHECKPOINT_METRIC"
            )


def _check_batch_of_one(model: nn.Module, images: torch.Tensor) -> None:
    """A first batch of one sample means batches of one throughout (batch_size 1, or one training sample a
    process; a lone last batch after full ones is dropped, see training/data.py): BatchNorm then cannot train where
    a feature map is 1x1. Tried in train mode on a copy, so that the model's statistics stay as they are."""
    if images.shape[0] != 1 or not any(isinstance(m, BATCH_NORMS) for m in model.modules()):
        return
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            copy.deepcopy(model).train()(images)
    except ValueError as err:
        raise SanityCheckError(
            f"sanity check 'batch of one' failed for images of {tuple(images.shape)} ([N, C, H, W]): "
            f"{str(err).strip().splitlines()[0]}; BatchNorm needs 2 or more samples a batch here: set "
            "DATA_LOADER_CONFIG.batch_size >= 2 with more training samples, larger images, or a smaller "
            "MODEL_CONFIG.depth"
        ) from None
