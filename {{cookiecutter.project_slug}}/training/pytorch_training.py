"""Raw PyTorch routine: the training loop written out by hand, the whole step in this file.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
The Run (training/run.py) builds the parts from the config, resumes, records and checkpoints; this file is the loop.
Under ``torchrun --nproc_per_node=N train.py`` the Run joins the process group, shards the data and wraps the model
in DistributedDataParallel (``run.model``); the loop stays the same, and its sums are added up over the ranks.
"""

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from config.paths import GLOBAL_CONFIG, GlobalConfig
from training.build import autocast
from training.records import RunResult
from training.run import Run

ROUTINE = "pytorch"
# Keys this routine cannot honour, with what to do instead.
REFUSED = {"LR_FIND": "the pytorch routine has no learning-rate finder; use the ignite or fastai routine, or set lr"}


def train_one_epoch(run: Run, epoch: int) -> float:
    """One pass over the training data; returns the loss averaged over samples (of all ranks)."""
    model, optimizer, scheduler, scaler = run.model, run.optimizer, run.scheduler, run.scaler
    grad_clip = run.config["GRAD_CLIP"]
    model.train()
    total, count = 0.0, 0
    # A bar per batch on a terminal (rank 0's); in a log file, the line per epoch is enough.
    quiet = run.rank != 0 or not sys.stderr.isatty()
    progress = tqdm(run.train_loader, desc=f"epoch {epoch}", leave=False, disable=quiet)
    for images, masks in progress:
        images, masks = run.to_device(images, masks)
        with autocast(run.device, run.dtype):  # the forward pass in MIXED_PRECISION's dtype, if any
            logits = model(images)
        loss = run.loss_fn(logits.float(), masks)  # the loss in full precision
        if not torch.isfinite(loss):  # stop before a NaN reaches the weights; last.pt keeps the last good epoch
            raise FloatingPointError(f"the training loss is {loss.item()} at epoch {epoch}, step {run.step + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16: the loss scaled up so that small gradients survive; else as it is
        if grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, so that GRAD_CLIP means the same in fp16
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)  # skipped when fp16 gradients overflowed
        scaler.update()
        if run.scheduler_per_step:  # ONE_CYCLE steps every batch
            scheduler.step()
        run.end_step(loss.item())
        # Weighted by batch size, so that a short last batch counts for what it holds.
        total += loss.item() * len(images)
        count += len(images)
        progress.set_postfix(loss=f"{loss.item():.4f}")
    return run.mean_over_ranks({"train_loss": total}, count)["train_loss"]


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Validation loss (the mean over samples) and metrics of rank 0's model, over all ranks' shards. Each metric
    column is the mean of its defined values, beside its pooled value (utils/metric_sums.py)."""
    run.sync_buffers()
    run.metrics.reset()  # a sum and a count of defined values per (metric, class), and pooled pixel counts
    loss_sum, count = 0.0, 0
    for images, masks in run.val_loader:
        images, masks = run.to_device(images, masks)
        logits = run.predict(images)  # the bare model in eval mode, float32 logits
        loss_sum += run.loss_fn(logits, masks).item() * len(images)
        run.metrics.update(logits, masks)
        count += len(images)
    return {**run.mean_over_ranks({"val_loss": loss_sum}, count), **run.metric_values()}


def train(
    config: dict[str, Any],
    global_config: GlobalConfig = GLOBAL_CONFIG,
    resume: str | Path | None = None,
    hooks: list[Any] | None = None,
) -> RunResult:
    """Train ``config`` with a hand-written loop; ``resume`` is ``latest``, a run name or a checkpoint path;
    ``hooks``: what a caller that starts runs itself (a search) adds to the run (see extensions/__init__.py)."""
    # build and resume
    run = Run(config, global_config, ROUTINE, resume, REFUSED, hooks=hooks)
    # loop
    with run.guard():
        for epoch in run.epochs():
            train_loss = train_one_epoch(run, epoch)
            # evaluate
            val = evaluate(run)
            run.step_epoch_scheduler(val)  # CosineAnnealingLR and co. once an epoch; ReduceLROnPlateau reads val
            # checkpoint and record
            if run.end_epoch(epoch, train_loss, val):
                break
    return run.finish()
