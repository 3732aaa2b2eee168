"""TensorBoard events of a run, with the same tags whatever the routine.

Tags: ``loss/train`` and ``loss/val`` per epoch, ``loss/train_step`` per optimizer step, ``metrics/<name>`` per
epoch (e.g. ``metrics/val_dice``), ``lr`` per epoch, ``inputs`` (the first augmented training batch: input | mask)
and ``predictions`` per epoch (validation samples: input | mask | prediction).
"""

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger:
    """Writes a run's scalars and images under ``<run_dir>/tensorboard``."""

    def __init__(self, log_dir: Path) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """Log one history.csv row (``epoch``, ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``)."""
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key in ("train_loss", "val_loss"):
                self.writer.add_scalar(f"loss/{key[:-5]}", value, epoch)
            elif key.startswith("val_"):
                self.writer.add_scalar(f"metrics/{key}", value, epoch)
            elif key == "lr":
                self.writer.add_scalar("lr", value, epoch)
        self.writer.flush()

    def log_step(self, step: int, loss: float) -> None:
        """Log the training loss of one optimizer step."""
        self.writer.add_scalar("loss/train_step", loss, step)

    def log_inputs(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        """Log the first training batch as the model sees it (after augmentation): input | mask."""
        self.writer.add_images("inputs", _side_by_side(images, masks), 0, dataformats="NCHW")
        self.writer.flush()

    def log_graph(self, model: torch.nn.Module, images: torch.Tensor) -> None:
        """The model's graph, where torch.jit can trace it (a model that cannot be traced is skipped)."""
        was_training = model.training
        model.eval()  # a traced forward in train mode would update the batch-norm statistics
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's warnings concern torch.jit, not this run
                self.writer.add_graph(model, images)
        except Exception:  # pylint: disable=broad-exception-caught  # tracing fails in many ways; the graph is optional
            pass
        finally:
            model.train(was_training)

    def log_predictions(self, epoch: int, images: torch.Tensor, masks: torch.Tensor, logits: torch.Tensor) -> None:
        """Log a few validation samples: input | true mask | predicted mask."""
        predictions = (logits.detach().float().cpu() > 0).float()
        self.writer.add_images("predictions", _side_by_side(images, masks, predictions), epoch, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _side_by_side(images: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
    """Grey-scale images scaled to [0, 1] with their first mask channel(s) beside them, along the width."""
    images = images.detach().float().cpu()
    if images.shape[1] != 1:
        images = images.mean(dim=1, keepdim=True)  # grey-scale so that the panels line up
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    images = (images - low) / (high - low).clamp_min(1e-8)
    return torch.cat([images, *(mask.detach().float().cpu()[:, :1] for mask in masks)], dim=3)
