"""TensorBoard events of a run, with the same tags whatever the routine.

Tags: ``loss/train`` and ``loss/val`` per epoch, ``loss/train_step`` per optimizer step, ``metrics/<name>`` per
epoch (e.g. ``metrics/val_dice``), ``lr`` per epoch, ``inputs`` (the first augmented training batch: input | mask)
and ``predictions`` per epoch (validation samples: input | mask | prediction).

Image panels are RGB: an input of 1 or 2 bands shows its first band in grey, of 3 bands or more its first three as
RGB (each sample scaled to [0, 1]). Masks and predictions show the label map of the task: binary foreground white,
multiclass each class in a fixed colour of ``PALETTE`` (class 0 black), multilabel the first three labels as the red,
green and blue channels; ignored pixels (target < 0) are mid grey.
"""

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from utils.metrics import predicted_labels

# Class colours (RGB in [0, 1]) of multiclass label maps: black background, then well-separated hues; classes past
# the end reuse them in order. Mid grey is kept for ignored pixels.
PALETTE = torch.tensor(
    [
        [0.0, 0.0, 0.0],
        [0.90, 0.10, 0.10],
        [0.10, 0.70, 0.20],
        [0.15, 0.35, 0.95],
        [1.00, 0.85, 0.10],
        [0.80, 0.20, 0.85],
        [0.10, 0.85, 0.85],
        [1.00, 0.55, 0.10],
        [0.55, 0.35, 0.15],
        [1.00, 1.00, 1.00],
    ]
)
IGNORED_GREY = 0.5


class TensorBoardLogger:
    """Writes a run's scalars and images under ``<run_dir>/tensorboard``."""

    def __init__(self, log_dir: Path, task: str = "binary") -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.task = task  # how masks and logits become label maps (TASK of the run)

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
        self.writer.add_images("inputs", _side_by_side(images, label_colours(masks, self.task)), 0, dataformats="NCHW")
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
        panels = _side_by_side(
            images, label_colours(masks, self.task), label_colours(predicted_labels(logits, self.task), self.task)
        )
        self.writer.add_images("predictions", panels, epoch, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def image_colours(images: torch.Tensor) -> torch.Tensor:
    """float32 RGB ``[N, 3, H, W]`` in [0, 1] of images ``[N, C, H, W]``: the first band in grey (C < 3) or the first
    three as RGB, each sample scaled by its own minimum and maximum (non-finite values shown as the minimum)."""
    images = images.detach().float().cpu()
    images = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    finite = torch.isfinite(images)
    low = torch.where(finite, images, torch.inf).amin(dim=(1, 2, 3), keepdim=True)
    high = torch.where(finite, images, -torch.inf).amax(dim=(1, 2, 3), keepdim=True)
    low, high = low.nan_to_num(0.0, posinf=0.0), high.nan_to_num(0.0, neginf=0.0)  # a sample with no finite value
    return torch.where(finite, (images - low) / (high - low).clamp_min(1e-8), 0.0).clamp(0, 1)


def label_colours(labels: torch.Tensor, task: str) -> torch.Tensor:
    """float32 RGB ``[N, 3, H, W]`` in [0, 1] of label maps: targets or :func:`predicted_labels` of ``task``.

    binary ``[N, 1, H, W]`` 0/1: black/white; multiclass ``[N, 1, H, W]`` class indices: ``PALETTE`` colours;
    multilabel ``[N, K, H, W]`` 0/1: labels 0, 1, 2 as red, green, blue. Pixels < 0 (ignored) are mid grey.
    """
    labels = labels.detach().cpu()
    ignored = (labels < 0).any(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    if task == "multiclass":
        index = labels[:, 0].long().clamp_min(0) % len(PALETTE)
        colours = PALETTE[index].permute(0, 3, 1, 2)  # [N, H, W, 3] -> [N, 3, H, W]
    elif task == "multilabel":
        colours = (labels[:, :3] > 0.5).float()
        colours = torch.cat([colours, colours.new_zeros(colours.shape[0], 3 - colours.shape[1], *colours.shape[2:])], 1)
    else:
        colours = (labels[:, :1] > 0.5).float().expand(-1, 3, -1, -1)
    return torch.where(ignored, IGNORED_GREY, colours)


def _side_by_side(images: torch.Tensor, *panels: torch.Tensor) -> torch.Tensor:
    """The images as RGB (:func:`image_colours`) with the RGB ``panels`` beside them, along the width."""
    return torch.cat([image_colours(images), *panels], dim=3)
