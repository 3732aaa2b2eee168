"""Small torch helpers: seeding, RNG state, atomic checkpoints, the backward step and finite checks."""

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.path import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch, in types that ``torch.load(weights_only=True)`` accepts."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`get_rng_state`."""
    random.setstate(state["python"])
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically: a process killed while saving leaves the previous file readable."""
    with atomic_write(path, "wb") as file:
        torch.save(checkpoint, file)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (no code runs)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file; all mean the same here
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no format_version/model)")
    return checkpoint


def check_finite(value: torch.Tensor, what: str) -> None:
    """Raise FloatingPointError if ``value`` holds a NaN or an infinity; ``what`` says where it came from."""
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"{what} is not finite ({value.detach().flatten()[:4].tolist()})")


def backprop(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> None:
    """Backward pass and optimizer step, with loss scaling (fp16) and gradient-norm clipping.

    Gradients are unscaled before clipping, so that ``grad_clip`` means the same with and without fp16.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
