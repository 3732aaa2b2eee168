"""Checks on one batch before the first epoch: the images' bands against the model's input, its output against
TASK and CLASSES, the loss and metrics (finite, and given the task they are written for), and a save/load round
trip. A failed check is a SanityCheckError that names it: one line, before anything is trained.
"""

import copy
import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from training.build import build_model

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class SanityCheckError(RuntimeError):
    """A check on the first batch failed before training started; the message names the check."""


def sanity_checks(
    config: dict[str, Any],
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    loss_fn: Callable,
    metrics: dict[str, Callable],
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
            for name, function in {"loss": loss_fn, **{f"metric {n}": f for n, f in metrics.items()}}.items():
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
