"""Exact NaN-and-count means of metrics over a data set, and pooled values: what validation and evaluate.py log.

Each (metric, class) column keeps its own sum and count of defined values (a NaN value, see utils/metrics.py, is
skipped), so that a mean over batches of any size, and over the ranks of a distributed run (their sums added up),
is exactly the mean over all the samples where the value is defined. Beside each mean of the project's own metrics
(dice, f1, iou, precision, recall: ratios of counts) is its pooled value: TP, FP and FN summed over every valid
pixel of the set, then the ratio (nnU-Net's and MONAI's "aggregate" figure, that empty tiles cannot sway).

Columns, for a metric ``name``: ``name`` (binary: the mean over samples; otherwise the mean over classes of each
class's mean over samples), ``name_pooled`` (the mean over classes of each class's pooled value) and, but for a
binary task, ``name_<class>``. A column with no defined value is NaN. The three routines and evaluate.py share this
one class: the raw loop calls :meth:`MetricSums.update` per batch, Ignite's evaluator and fastai's Learner wrap it
in their own metric classes; :meth:`MetricSums.totals` is what is summed over ranks before :meth:`MetricSums.compute`.
"""

import math

import torch

from utils.data.targets import TASKS
from utils.metrics import Metric, counts, ratio_of, with_task


def metric_columns(metrics: dict[str, Metric], classes: list[str], task: str) -> dict[str, tuple[str, list[int]]]:
    """Column name (no ``val_`` prefix) -> (its per-class values in :meth:`MetricSums.class_values`, the indices of
    the classes it averages), in the order the columns are logged.

    ValueError for an unknown task, a binary task with other than one class, or fewer than two classes otherwise.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if task == "binary" and len(classes) != 1:
        raise ValueError(f"task 'binary' has one class (the foreground), got CLASSES {classes}")
    if task != "binary" and len(classes) < 2:
        raise ValueError(f"task {task!r} needs two CLASSES or more, got {classes}")
    every = list(range(len(classes)))
    pairs = []
    for name, metric in metrics.items():
        pairs.append((name, (name, every)))
        if ratio_of(metric) is not None:
            pairs.append((f"{name}_pooled", (f"{name}_pooled", every)))
        if task != "binary":
            pairs += [(f"{name}_{class_name}", (name, [index])) for index, class_name in enumerate(classes)]
    columns = dict(pairs)
    if len(columns) < len(pairs):  # e.g. a class named "pooled", or METRICS "dice" and "dice_a" with a class "a"
        twice = sorted({column for column, _ in pairs if [c for c, _ in pairs].count(column) > 1})
        raise ValueError(f"METRICS {list(metrics)} and CLASSES {classes} both give the column(s) {twice}: rename one")
    return columns


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta`` in ``mode`` ("min" or "max").
    A NaN (undefined) value is never compared: it never improves, and a NaN best (never kept) would lose to any."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _nanmean(values: torch.Tensor) -> float:
    """The mean of the defined (not NaN) values; NaN when there is none."""
    defined = values[~values.isnan()]
    return float(defined.mean()) if len(defined) else float("nan")


class MetricSums:
    """Sums and counts of defined per-sample values per (metric, class), and pooled TP/FP/FN per class (float64, on
    the CPU: exact for counts up to 2**53, and MPS has no float64).

    Args:
        metrics: name -> ``metric(logits, target[, task]) -> [N, K]`` (NaN where undefined); a metric of old without
            ``task`` may return a scalar (the batch's mean, binary only), which counts once per sample.
        classes: the names of the K classes (binary: one, the foreground); ``task``: binary, multiclass, multilabel.
        prefix: put before every column name (``val_`` in training).
    """

    def __init__(self, metrics: dict[str, Metric], classes: list[str], task: str, prefix: str = "") -> None:
        self.columns = metric_columns(metrics, classes, task)
        self.metrics = {name: with_task(metric, task) for name, metric in metrics.items()}
        self.ratios = {name: ratio_of(metric) for name, metric in metrics.items()}
        self.classes, self.task, self.prefix = classes, task, prefix
        self.sums = self.counts = self.pixels = torch.zeros(0)
        self.reset()

    def reset(self) -> None:
        """Start a new pass over the data: every sum and count at 0."""
        shape = (len(self.metrics), len(self.classes))
        self.sums, self.counts = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        self.pixels = torch.zeros(3, len(self.classes), dtype=torch.float64)  # TP, FP, FN over every valid pixel

    def per_sample(self, name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The metric ``name`` of each sample and class, float ``[N, K]`` (NaN where undefined).

        Raises:
            ValueError: the metric's values are not ``[N, K]`` with one column per class (or its inputs do not fit
                the task: the metric's own error).
        """
        values = self.metrics[name](logits, target)
        if values.dim() == 0 and self.task == "binary":
            values = values.view(1, 1).expand(len(logits), 1)  # a metric of old: the batch's mean, for each sample
        if values.dim() != 2 or values.shape[0] != len(logits):
            raise ValueError(
                f"{name}: the metric gave values of shape {tuple(values.shape)} for logits {tuple(logits.shape)}; "
                "logged means need [N, K] (see utils/metrics.py)"
            )
        if values.shape[1] != len(self.classes):
            raise ValueError(
                f"{name}: {len(self.classes)} CLASSES but logits {tuple(logits.shape)} have {values.shape[1]} "
                "channels; set CLASSES to one name per output channel"
            )
        return values

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Add a batch (logits ``[N, K, H, W]``, the task's target); returns each metric's ``[N, K]`` float64 values
        on the CPU (evaluate.py's per-image table). The project's own metrics are computed from one count of TP, FP
        and FN per batch, which the pooled values add up too."""
        logits, target = logits.detach(), target.detach()
        batch_counts = counts(logits, target, self.task) if any(self.ratios.values()) else None
        values = {}
        for index, (name, ratio) in enumerate(self.ratios.items()):
            if ratio is not None and batch_counts is not None:
                sample_values = ratio(*batch_counts)  # the same float32 figures as the metric function gives
            else:
                sample_values = self.per_sample(name, logits, target)
            values[name] = sample_values.detach().double().cpu()
            defined = ~values[name].isnan()
            self.sums[index] += values[name].nan_to_num(0.0).sum(0)
            self.counts[index] += defined.sum(0)
        if batch_counts is not None:
            self.pixels += torch.stack([count.sum(0) for count in batch_counts]).double().cpu()
        return values

    def totals(self) -> list[float]:
        """Every sum and count as one flat list: what a distributed run adds up over its ranks."""
        return torch.cat([self.sums.flatten(), self.counts.flatten(), self.pixels.flatten()]).tolist()

    def class_values(self, totals: list[float] | None = None) -> dict[str, torch.Tensor]:
        """Per class, float64 ``[K]``: ``<name>`` the mean of the defined values, ``<name>_count`` their number and,
        for the project's own metrics, ``<name>_pooled``; from ``totals`` (summed over ranks) or this process's."""
        if totals is not None:
            n, k = self.sums.shape
            flat = torch.tensor(totals, dtype=torch.float64)
            sums, numbers, pixels = flat[: n * k].view(n, k), flat[n * k : 2 * n * k].view(n, k), flat[2 * n * k :]
            pixels = pixels.view(3, k)
        else:
            sums, numbers, pixels = self.sums, self.counts, self.pixels
        result = {}
        for index, (name, ratio) in enumerate(self.ratios.items()):
            result[name] = torch.where(numbers[index] > 0, sums[index] / numbers[index].clamp(min=1), float("nan"))
            result[f"{name}_count"] = numbers[index]
            if ratio is not None:
                result[f"{name}_pooled"] = ratio(*pixels)
        return result

    def compute(self, totals: list[float] | None = None) -> dict[str, float]:
        """The logged columns (see the module's docstring), prefixed; NaN where no value is defined."""
        values = self.class_values(totals)
        return {f"{self.prefix}{column}": _nanmean(values[key][where]) for column, (key, where) in self.columns.items()}
