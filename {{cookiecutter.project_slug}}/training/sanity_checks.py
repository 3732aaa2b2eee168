"""Checks on one batch before the first epoch: the model's output against the masks, a finite loss, and a
save/load round trip. A failed check is a SanityCheckError that names it: one line, before anything is trained.
"""

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from training.build import build_model


class SanityCheckError(RuntimeError):
    """A check on the first batch failed before training started; the message names the check."""


def sanity_checks(
    config: dict[str, Any],
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    loss_fn: Callable,
    device: torch.device,
) -> None:
    """One batch through the model: output shape against the mask, a finite loss, and a save/load round trip
    that gives identical outputs. Runs in eval mode and on a forked RNG, so training is exactly as without it.
    """
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
            if logits.shape != masks.shape:
                raise SanityCheckError(
                    f"sanity check 'output shape' failed: the model gives {tuple(logits.shape)} for masks of "
                    f"{tuple(masks.shape)}; make MODEL_CONFIG's output channels match the masks"
                )
            loss = loss_fn(logits.float(), masks)
            if not torch.isfinite(loss).all():
                raise SanityCheckError(f"sanity check 'finite loss' failed: the first batch's loss is {loss}")
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
