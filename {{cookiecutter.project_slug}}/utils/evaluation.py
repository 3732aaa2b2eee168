"""Scores of a checkpoint on a labelled data set: per image and class, their means, pooled counts, confusion.

Whole images go through a DataLoader exactly as validation does (the run's batch size, batches padded to the model's
divisor with ignored pixels), so that the mean over images of a metric is the figure history.csv records; tiled
evaluation predicts each image by sliding windows (utils/tiling.py), as predict.py does for large scenes.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from utils.data.folder import SegmentationFolder
from utils.data.samples import SegmentationSamples
from utils.data.targets import MaskEncoder
from utils.data.transforms import pad_collate
from utils.losses import one_hot
from utils.metrics import EPS, confusion_matrix, dice, iou, predicted_labels
from utils.prediction import Predictor
from utils.tiling import sliding_window

METRICS = {"dice": dice, "iou": iou}


@dataclass
class Scores:
    """Per-image metrics (``per_image[name]``: tensors [N, K] appended batch by batch), pooled counts over all valid
    pixels (``counts``: tp, fp, fn, each [K]) and the confusion matrix (None for multilabel)."""

    task: str
    per_image: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {name: [] for name in METRICS})
    counts: torch.Tensor | None = None
    confusion: torch.Tensor | None = None

    def add(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Score a batch: logits [N, K, H, W] float32, target as the Targets contract (ignored pixels < 0)."""
        for name, metric in METRICS.items():
            self.per_image[name].append(metric(logits, target, self.task).double().cpu())
        labels = predicted_labels(logits, self.task)
        if self.task == "multiclass":
            labels = labels == torch.arange(logits.shape[1], device=labels.device).view(1, -1, 1, 1)
        pred = labels.bool()
        truth, valid = one_hot(target, self.task, logits.shape[1])
        counts = torch.stack(
            [
                (pred & truth & valid).sum((0, 2, 3)),
                (pred & ~truth & valid).sum((0, 2, 3)),
                (~pred & truth).sum((0, 2, 3)),
            ]
        ).cpu()
        self.counts = counts if self.counts is None else self.counts + counts
        if self.task != "multilabel":
            matrix = confusion_matrix(logits, target, self.task, logits.shape[1])
            self.confusion = matrix if self.confusion is None else self.confusion + matrix

    def means(self) -> dict[str, float]:
        """Each metric's mean over classes of its per-class mean over images (what validation records)."""
        return {name: float(torch.cat(values).mean(0).mean()) for name, values in self.per_image.items()}


def samples_of(predictor: Predictor, root: str | Path) -> tuple[SegmentationFolder, Dataset]:
    """The labelled folder ``root`` as training reads it: the run's bands, masks encoded for its task and classes,
    its normalisation and no-data value. Raises DataError for a bad folder, ValueError for a bad class mapping."""
    config = predictor.config
    folder = SegmentationFolder(root, channels=predictor.channels)
    num_classes = 2 if predictor.task == "binary" else len(predictor.classes)
    encoder = MaskEncoder(
        predictor.task, num_classes, config.get("MASK_VALUES"), config.get("IGNORE_INDEX"), config.get("MASK_THRESHOLD")
    )
    return folder, SegmentationSamples(folder, encoder, predictor.stats, predictor.nodata)


@torch.no_grad()
def evaluate_whole(predictor: Predictor, samples: Dataset, loader_config: dict[str, Any]) -> Scores:
    """Scores of whole images in the batches validation makes (``loader_config``: the run's DATA_LOADER_CONFIG)."""
    scores = Scores(predictor.task)
    device = next(predictor.model.parameters()).device
    kwargs = {**loader_config, "shuffle": False, "collate_fn": pad_collate(predictor.divisor)}
    for images, targets in DataLoader(samples, **kwargs):
        scores.add(predictor.model(images.to(device)).float(), targets.to(device))
    return scores


def evaluate_tiled(predictor: Predictor, samples: Dataset, tile: int, overlap: float) -> Scores:
    """Scores of each image predicted by overlapping tiles of ``tile`` pixels (logits stitched on the CPU)."""
    scores = Scores(predictor.task)
    for index in range(len(samples)):  # type: ignore[arg-type]  # pylint: disable=consider-using-enumerate
        image, target = samples[index]
        scores.add(sliding_window(predictor.model, image[None], tile, overlap, predictor.divisor), target[None])
    return scores


def tables(scores: Scores, images: list[str], classes: list[str]) -> dict[str, pd.DataFrame]:
    """per_image (image, mean and per-class dice and iou), summary (per class and mean: mean over images and
    pooled over all pixels) and, but for multilabel, confusion (rows truth, columns prediction) as DataFrames."""
    per_image = pd.DataFrame({"image": images})
    summary = pd.DataFrame({"class": [*classes, "mean"]})
    for name, values in scores.per_image.items():
        table = torch.cat(values)
        per_image[name] = table.mean(1).numpy()
        for column, class_name in enumerate(classes):
            per_image[f"{name}_{class_name}"] = table[:, column].numpy()
        summary[name] = [*table.mean(0).tolist(), float(table.mean(0).mean())]
    tp, fp, fn = scores.counts.double() if scores.counts is not None else torch.zeros(3, len(classes))
    for name, pooled in (
        ("dice", (2 * tp + EPS) / (2 * tp + fp + fn + EPS)),
        ("iou", (tp + EPS) / (tp + fp + fn + EPS)),
    ):
        summary[f"{name}_pooled"] = [*pooled.tolist(), float(pooled.mean())]
    result = {"per_image": per_image, "summary": summary}
    if scores.confusion is not None:
        names = ["background", *classes] if scores.task == "binary" else classes
        result["confusion"] = pd.DataFrame(scores.confusion.numpy(), index=pd.Index(names, name="truth"), columns=names)
    return result


def write_tables(folder: Path, results: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each table as ``<name>.csv`` into ``folder`` (created), and confusion.png; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in results.items():
        table.to_csv(folder / f"{name}.csv", index=name == "confusion", float_format="%.6g")
        written.append(folder / f"{name}.csv")
    if "confusion" in results:
        written.append(plot_confusion(results["confusion"], folder / "confusion.png"))
    return written


def plot_confusion(confusion: pd.DataFrame, path: Path) -> Path:
    """confusion.png: colours by share of each true class (row), counts written in the cells."""
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel  # no pyplot: no display needed

    shares = confusion.to_numpy() / confusion.to_numpy().sum(1, keepdims=True).clip(min=1)
    size = 2.0 + 0.6 * len(confusion)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class")
    axes.set(xlabel="predicted", ylabel="true", xticks=range(len(confusion)), yticks=range(len(confusion)))
    axes.set_xticklabels(confusion.columns, rotation=45, ha="right")
    axes.set_yticklabels(confusion.index)
    for (row, column), count in pd.DataFrame(confusion.to_numpy()).stack().items():
        colour = "white" if shares[row, column] > 0.5 else "black"
        axes.text(column, row, f"{count}", ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
