"""Raw PyTorch routine: the training loop written out by hand.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
Building, resuming, checkpoints and records are shared (training/common.py); this file is the loop itself.
Under ``torchrun --nproc_per_node=N train.py`` the Run joins the process group, shards the data and wraps the model
in DistributedDataParallel; the loop stays the same, and its sums are added up over the ranks.
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
    """One pass over the training data; returns the loss averaged over samples (of all ranks)."""
    run.model.train()
    total, count = 0.0, 0
    # A bar per batch on a terminal (rank 0's); in a log file, the recorder's line per epoch is enough.
    quiet = run.rank != 0 or not sys.stderr.isatty()
    progress = tqdm(run.train_loader, desc=f"epoch {epoch}", leave=False, disable=quiet)
    for images, masks in progress:
        loss = run.train_step(images, masks)
        # Weighted by batch size, so that a short last batch counts for what it holds.
        total += loss * len(images)
        count += len(images)
        progress.set_postfix(loss=f"{loss:.4f}")
    return run.mean_over_ranks({"train_loss": total}, count)["train_loss"]


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Validation loss and metrics, each averaged over samples (of all ranks' shards)."""
    run.sync_buffers()
    run.model.eval()
    totals = dict.fromkeys(["val_loss", *(f"val_{name}" for name in run.metrics)], 0.0)
    count = 0
    for images, masks in run.val_loader:
        images, masks = run.to_device(images, masks)
        with autocast(run.device, run.dtype):
            logits = run.model(images)
        logits = logits.float()
        totals["val_loss"] += run.loss_fn(logits, masks).item() * len(images)
        for name, metric in run.metrics.items():
            totals[f"val_{name}"] += metric(logits, masks).item() * len(images)
        count += len(images)
    return run.mean_over_ranks(totals, count)


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
