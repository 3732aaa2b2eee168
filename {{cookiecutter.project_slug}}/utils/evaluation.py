"""Scores of a checkpoint on a labelled data set: per image and class, their means, pooled counts, confusion.

Whole images go through a DataLoader exactly as validation does (the run's batch size, batches padded to the model's
divisor with ignored pixels), so that the mean over images of a metric is the figure history.csv records; tiled
evaluation predicts each image by sliding windows (utils/tiling.py), as predict.py does for large scenes; an
exported model predicts each image alone, as predict.py's ONNX path does (utils/onnx_evaluation.py). A value
with nothing to count (dice of an image where truth and prediction are both empty) is NaN, and the means skip it
with the rule validation follows (utils/metric_sums.py): each class's mean over its defined values, with their count.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from config.serialize import from_jsonable
from utils.data.folder import SegmentationFolder
from utils.data.samples import SegmentationSamples
from utils.data.targets import MaskEncoder
from utils.data.transforms import pad_collate
from utils.metric_sums import MetricSums
from utils.metrics import confusion_matrix, dice, iou
from utils.prediction import Predictor
from utils.tiling import sliding_window

if TYPE_CHECKING:  # onnxruntime only for an .onnx model
    from utils.onnx_evaluation import OnnxModel

METRICS = {"dice": dice, "iou": iou}


@dataclass
class Scores:
    """Per-image metrics (``per_image[name]``: float64 tensors [N, K] appended batch by batch, NaN where undefined),
    their sums and counts and the pooled counts over all valid pixels (``sums``), and the confusion matrix (None for
    multilabel)."""

    task: str
    classes: list[str]
    metrics: dict[str, Any] = field(default_factory=lambda: dict(METRICS))  # name -> metric (utils/metrics.py)
    per_image: dict[str, list[torch.Tensor]] = field(init=False)
    sums: MetricSums = field(init=False)
    confusion: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.per_image = {name: [] for name in self.metrics}
        self.sums = MetricSums(self.metrics, self.classes, self.task)

    def add(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Score a batch: logits [N, K, H, W] float32, target as the Targets contract (ignored pixels < 0)."""
        for name, values in self.sums.update(logits, target).items():
            self.per_image[name].append(values)
        if self.task != "multilabel":
            matrix = confusion_matrix(logits, target, self.task, logits.shape[1])
            self.confusion = matrix if self.confusion is None else self.confusion + matrix

    def means(self) -> dict[str, float]:
        """Each metric's mean over classes of its per-class mean over images, undefined values skipped, and its
        pooled value (``<name>_pooled``): the columns validation records, without ``val_``."""
        return self.sums.compute()


def samples_of(predictor: "Predictor | OnnxModel", root: str | Path) -> tuple[SegmentationFolder, Dataset]:
    """The labelled folder ``root`` as training reads it: the run's bands, masks encoded for its task and classes,
    its normalisation and no-data value (no-data pixels ``predictor.fill``; an exported model's images raw, NaN).
    Raises DataError for a bad folder, ValueError for a bad class mapping."""
    config = predictor.config
    # An exported model's bands are fixed: a mismatch names the file, not DATASET_CONFIG as a checkpoint's does.
    expected_by = None if isinstance(predictor, Predictor) else f"the exported model {predictor.path}"
    folder = SegmentationFolder(root, channels=predictor.channels, expected_by=expected_by)
    num_classes = 2 if predictor.task == "binary" else len(predictor.classes)
    encoder = MaskEncoder(
        predictor.task, num_classes, config.get("MASK_VALUES"), config.get("IGNORE_INDEX"), config.get("MASK_THRESHOLD")
    )
    return folder, SegmentationSamples(folder, encoder, predictor.stats, predictor.nodata, fill=predictor.fill)


@torch.no_grad()
def evaluate_whole(
    predictor: Predictor, samples: Dataset, loader_config: dict[str, Any], metrics: dict[str, Any] | None = None
) -> Scores:
    """Scores of whole images in the batches validation makes (``loader_config``: the run's DATA_LOADER_CONFIG;
    ``metrics``: name -> metric, default dice and iou)."""
    scores = Scores(predictor.task, predictor.classes, dict(metrics or METRICS))
    device = next(predictor.model.parameters()).device
    kwargs = {**loader_config, "shuffle": False, "collate_fn": pad_collate(predictor.divisor, predictor.fill)}
    for images, targets in DataLoader(samples, **kwargs):
        scores.add(predictor.model(images.to(device)).float(), targets.to(device))
    return scores


def evaluate_tiled(predictor: Predictor, samples: Dataset, tile: int, overlap: float) -> Scores:
    """Scores of each image predicted by overlapping tiles of ``tile`` pixels (logits stitched on the CPU)."""

    def logits_of(image: torch.Tensor) -> torch.Tensor:
        return sliding_window(predictor.model, image[None], tile, overlap, predictor.divisor)

    return evaluate_each(predictor.task, predictor.classes, samples, logits_of)


def evaluate_each(
    task: str, classes: list[str], samples: Dataset, logits_of: Callable[[torch.Tensor], torch.Tensor]
) -> Scores:
    """Scores of each image ``[C, H, W]`` of ``samples`` predicted alone by ``logits_of`` (float32 logits
    ``[1, K, H, W]``): tiles, or an exported model (utils/onnx_evaluation.OnnxModel.logits)."""
    scores = Scores(task, classes)
    for index in range(len(samples)):  # type: ignore[arg-type]  # pylint: disable=consider-using-enumerate
        image, target = samples[index]
        scores.add(logits_of(image), target[None])
    return scores


def scores_of(predictor: "Predictor | OnnxModel", samples: Dataset, tile: int, overlap: float) -> Scores:
    """Scores of ``samples``: whole images as validation batches them (``tile`` 0) or by tiles for a checkpoint;
    each image alone, by tiles or in one pass, through onnxruntime for an exported model."""
    if not isinstance(predictor, Predictor):  # an OnnxModel: predict.py's ONNX path, one image at a time
        return evaluate_each(predictor.task, predictor.classes, samples, lambda x: predictor.logits(x, tile, overlap))
    if tile:
        return evaluate_tiled(predictor, samples, tile, overlap)
    loader_config = from_jsonable(predictor.config.get("DATA_LOADER_CONFIG") or {"batch_size": 1})
    return evaluate_whole(predictor, samples, loader_config)


def tables(scores: Scores, images: list[str], classes: list[str]) -> dict[str, pd.DataFrame]:
    """per_image (image, the mean over classes and each class's dice and iou; NaN where undefined), summary and, but
    for multilabel, confusion (rows truth, columns prediction) as DataFrames.

    summary has a row per class and a ``mean`` row (the mean over classes, NaN classes skipped). Per metric:
    ``<name>`` the mean over the images where it is defined, ``<name>_count`` their number (``mean`` row: the
    number of classes averaged), ``<name>_pooled`` the value of all pixels together (TP, FP, FN summed first).
    """
    per_image = pd.DataFrame({"image": images})
    summary = pd.DataFrame({"class": [*classes, "mean"]})
    values, means = scores.sums.class_values(), scores.means()
    for name, batches in scores.per_image.items():
        table = torch.cat(batches) if batches else torch.zeros(0, len(classes), dtype=torch.float64)
        per_image[name] = table.nanmean(1).numpy()  # NaN for an image where every class is undefined
        for column, class_name in enumerate(classes):
            per_image[f"{name}_{class_name}"] = table[:, column].numpy()
        summary[name] = [*values[name].tolist(), means[name]]
        summary[f"{name}_count"] = [*values[f"{name}_count"].long().tolist(), int((~values[name].isnan()).sum())]
        summary[f"{name}_pooled"] = [*values[f"{name}_pooled"].tolist(), means[f"{name}_pooled"]]
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
        # An undefined value is written "nan" (as in history.csv), not an empty cell that reads as a missing column
        table.to_csv(folder / f"{name}.csv", index=name == "confusion", float_format="%.6g", na_rep="nan")
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
