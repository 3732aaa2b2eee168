"""Raw PyTorch routine: the training loop written out by hand.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
Building, resuming, checkpoints and records are shared (training/common.py); this file is the loop itself.
"""

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from config.config import GLOBAL_CONFIG, GlobalConfig
from training.common import Run, RunHooks, RunResult, autocast

ROUTINE = "pytorch"
# Keys this routine cannot honour, with what to do instead.
REFUSED = {"LR_FIND": "the pytorch routine has no learning-rate finder; use the ignite or fastai routine, or set lr"}


def train_one_epoch(run: Run, epoch: int) -> float:
    """One pass over the training data; returns the loss averaged over samples."""
    run.model.train()
    total, count = 0.0, 0
    # A bar per batch on a terminal; in a log file, the one line per epoch that the recorder writes is enough.
    progress = tqdm(run.train_loader, desc=f"epoch {epoch}", leave=False, disable=not sys.stderr.isatty())
    for images, masks in progress:
        loss = run.train_step(images, masks)
        # Weighted by batch size, so that a short last batch counts for what it holds.
        total += loss * len(images)
        count += len(images)
        progress.set_postfix(loss=f"{loss:.4f}")
    return total / count


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Validation loss and metrics, each averaged over samples."""
    run.model.eval()
    totals = dict.fromkeys(["val_loss", *(f"val_{name}" for name in run.metrics)], 0.0)
    count = 0
    for images, masks in run.val_loader:
        images = images.to(run.device, non_blocking=True)
        masks = masks.to(run.device, non_blocking=True)
        with autocast(run.device, run.dtype):
            logits = run.model(images)
        logits = logits.float()
        totals["val_loss"] += run.loss_fn(logits, masks).item() * len(images)
        for name, metric in run.metrics.items():
            totals[f"val_{name}"] += metric(logits, masks).item() * len(images)
        count += len(images)
    return {key: value / count for key, value in totals.items()}


def train(
    config: dict[str, Any],
    global_config: GlobalConfig = GLOBAL_CONFIG,
    resume: str | Path | None = None,
    hooks: RunHooks | None = None,
) -> RunResult:
    """Train ``config`` with a hand-written loop; ``resume`` is ``latest``, a run name or a checkpoint path;
    ``hooks``: what a caller that starts runs itself (the hyperparameter search) adds to the run."""
    # build and resume
    run = Run(config, global_config, ROUTINE, resume, REFUSED, hooks=hooks)
    # loop
    with run.guard():
        for epoch in run.epochs():
            train_loss = train_one_epoch(run, epoch)
            # evaluate
            val = evaluate(run)
            # checkpoint and record
            if run.end_epoch(epoch, train_loss, val):
                break
    return run.finish()
