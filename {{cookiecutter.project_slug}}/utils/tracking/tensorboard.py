"""TensorBoard events of a run, with the same tags whatever the routine.

Tags: ``loss/train`` and ``loss/val`` per epoch, ``loss/train_step`` per optimizer step, ``metrics/<name>`` per
epoch (e.g. ``metrics/val_dice``), ``lr`` per epoch, ``inputs`` (the first augmented training batch: input | mask)
and ``predictions`` per epoch (validation samples: input | mask | prediction).

Image panels are RGB, coloured by :mod:`utils.tracking.colours` as in notebooks/explore_runs.ipynb: inputs in grey or
as RGB, binary foreground white, multiclass each class in its palette colour, multilabel the first three labels as red,
green and blue, ignored pixels mid grey.
"""

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from utils.metrics import predicted_labels
from utils.tracking.colours import image_colours, label_colours


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


def _side_by_side(images: torch.Tensor, *panels: torch.Tensor) -> torch.Tensor:
    """The images as RGB (:func:`image_colours`) with the RGB ``panels`` beside them, along the width."""
    return torch.cat([image_colours(images), *panels], dim=3)
