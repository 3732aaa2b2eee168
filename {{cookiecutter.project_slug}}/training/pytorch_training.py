"""Raw PyTorch routine: the training loop written out by hand.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from config.config import GLOBAL_CONFIG, GlobalConfig
from config.device import get_device
from training.common import (
    RunRecorder,
    RunResult,
    autocast,
    autocast_dtype,
    build_loaders,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    current_lr,
    grad_scaler,
    load_for_resume,
    restore,
    set_epoch,
    step_scheduler,
    validate_config,
)
from utils.torchutils import backprop, check_finite, set_seed

ROUTINE = "pytorch"


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    dtype: torch.dtype | None,
    grad_clip: float | None,
    epoch: int,
    on_step: Callable[[float], None] | None = None,
) -> float:
    """One pass over the training data; returns the loss averaged over samples."""
    model.train()
    total, count = 0.0, 0
    progress = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not sys.stderr.isatty())
    for images, masks in progress:
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        with autocast(device, dtype):
            loss = loss_fn(model(images), masks)
        check_finite(loss, f"training loss at epoch {epoch}")
        backprop(loss, model, optimizer, scaler, grad_clip)
        # Weighted by batch size, so that a short last batch counts for what it holds.
        total += loss.item() * len(images)
        count += len(images)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if on_step is not None:
            on_step(loss.item())
    return total / count


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable,
    metrics: dict[str, Callable],
    device: torch.device,
    dtype: torch.dtype | None,
) -> tuple[dict[str, float], tuple]:
    """Validation loss and metrics averaged over samples, and the first batch (images, masks, logits)."""
    model.eval()
    totals = dict.fromkeys(["val_loss", *(f"val_{name}" for name in metrics)], 0.0)
    count, first_batch = 0, ()
    for images, masks in loader:
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(images)
        logits = logits.float()
        totals["val_loss"] += loss_fn(logits, masks).item() * len(images)
        for name, metric in metrics.items():
            totals[f"val_{name}"] += metric(logits, masks).item() * len(images)
        count += len(images)
        if not first_batch:
            first_batch = (images[:4], masks[:4], logits[:4])
    return {key: value / count for key, value in totals.items()}, first_batch


def train(
    config: dict[str, Any], global_config: GlobalConfig = GLOBAL_CONFIG, resume: str | Path | None = None
) -> RunResult:
    """Train ``config`` with a hand-written loop; ``resume`` is ``latest``, a run name or a checkpoint path."""
    # build
    config = validate_config(config)
    set_seed(config["SEED"])
    device = get_device(config["DEVICE"])
    dtype = autocast_dtype(config, device)
    train_loader, val_loader = build_loaders(config, device)
    model = build_model(config, device)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    scaler = grad_scaler(device, dtype)
    loss_fn = build_loss(config)

    # resume
    checkpoint = load_for_resume(resume, global_config, ROUTINE) if resume is not None else None
    if checkpoint is not None:
        restore(checkpoint, model, optimizer, scheduler, scaler)
    recorder = RunRecorder(config, global_config, ROUTINE, device, checkpoint)
    steps = [(recorder.start_epoch - 1) * len(train_loader)]

    def on_step(loss: float) -> None:
        steps[0] += 1
        if recorder.tensorboard is not None:
            recorder.tensorboard.log_step(steps[0], loss)

    # loop
    try:
        for epoch in range(recorder.start_epoch, config["EPOCHS"] + 1):
            started = time.perf_counter()
            lr = current_lr(optimizer)
            set_epoch(train_loader, config["SEED"], epoch)
            train_loss = train_one_epoch(
                model, train_loader, loss_fn, optimizer, scaler, device, dtype, config["GRAD_CLIP"], epoch, on_step
            )
            # evaluate
            val, (images, masks, logits) = evaluate(model, val_loader, loss_fn, config["METRICS"], device, dtype)
            step_scheduler(scheduler, val[recorder.metric])
            # record, then checkpoint: a crash in between is redone from the previous checkpoint on resume
            is_best = recorder.record_epoch(epoch, train_loss, val, lr, time.perf_counter() - started)
            if recorder.tensorboard is not None:
                recorder.tensorboard.log_predictions(epoch, images, masks, logits)
            recorder.save(recorder.checkpoint(epoch, model, optimizer, scheduler, scaler), is_best)
            if recorder.should_stop():
                break
    except KeyboardInterrupt as interrupt:
        recorder.finish("interrupted", interrupt)
        raise
    except Exception as error:
        recorder.finish("failed", error)
        raise
    return recorder.finish("completed")
