"""Checkpoints without training, for the tests of predict.py and evaluate.py: a seeded, untrained U-Net saved with
the config keys that predict and evaluate read, for any task, band count and normalisation."""

from pathlib import Path
from typing import Any

import torch

from config.serialize import to_jsonable
from models.unet import UNet
from training.checkpoint import FORMAT_VERSION

TINY_MODEL = {"base_channels": 4, "depth": 2}


def save_checkpoint(
    path: Path,
    task: str = "binary",
    classes: list[str] | None = None,
    bands: int = 1,
    stats: dict[str, Any] | None = None,
    old: bool = False,
    **config: Any,
) -> Path:
    """An untrained U-Net (seed 0) in a checkpoint at ``path``; ``old``: without TASK, CLASSES and normalisation,
    as checkpoints written before they existed. ``config``: more keys of the checkpoint's config."""
    classes = classes or ["foreground"]
    model_config = {"in_channels": bands, "out_channels": len(classes), **TINY_MODEL}
    torch.manual_seed(0)
    model = UNet(**model_config)
    saved = {"MODEL": UNet, "MODEL_CONFIG": model_config, "DATA_LOADER_CONFIG": {"batch_size": 4}, **config}
    if not old:
        saved.update(TASK=task, CLASSES=classes)
    checkpoint = {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": to_jsonable(saved)}
    if not old:
        checkpoint["normalization"] = stats
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
