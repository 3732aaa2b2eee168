"""Metrics for the three tasks: ``metric(logits, target, task="binary") -> [N, K]``, per sample and class.

Inputs as in :mod:`utils.losses` (``logits`` ``[N, K, H, W]``, the target of the task; pixels with target < 0 count
nowhere; a task that does not fit the shapes raises ValueError). Metrics are hard: binary and multilabel channels
predict a pixel when its logit is > 0 (probability > 0.5), multiclass predicts the argmax class.

A value whose denominator has nothing to count is undefined: NaN, never smoothed by an epsilon. Dice, F1 and IoU are
NaN where truth and prediction are both empty (TP + FP + FN = 0), precision where the prediction is empty
(TP + FP = 0), recall where the truth is empty (TP + FN = 0); a class predicted where the truth has none scores 0.
This is nnU-Net v2's rule (nnunetv2/evaluation/evaluate_predictions.py: both empty -> NaN, skipped in the means):
an empty tile predicted empty tells nothing about the segmentation, and scoring it 1.0 lets empty tiles outvote the
objects. :class:`utils.metric_sums.MetricSums` turns these values into the logged means (each column's mean over
its defined values) and pooled values (all pixels together); ``*_ratio`` give each ratio from counts, for both.

:func:`confusion_matrix`, :func:`predicted_labels` and :func:`probabilities` serve predict and evaluate.
"""

import functools
import inspect
import math
from collections.abc import Callable

import torch

from utils.losses import PIXEL_DIMS, check_inputs, one_hot

Metric = Callable[..., torch.Tensor]


def _check_logits(logits: torch.Tensor, task: str) -> None:
    """Refuse logits that do not fit ``task`` when there is no target (ValueError)."""
    check_inputs(logits, torch.zeros_like(logits[:, :1] if task != "multilabel" else logits, dtype=torch.long), task)


def predicted_labels(logits: torch.Tensor, task: str, threshold: float = 0.5) -> torch.Tensor:
    """Hard predictions, int64: binary ``[N, 1, H, W]`` 0/1, multiclass ``[N, 1, H, W]`` class indices (argmax),
    multilabel ``[N, K, H, W]`` 0/1 per label.

    ``threshold`` (in (0, 1), binary and multilabel) applies to the probability; it is compared as a logit so that
    0.5 is exactly ``logit > 0``, the rule of the metrics (``sigmoid`` rounds tiny logits to 0.5).
    """
    _check_logits(logits, task)
    if task == "multiclass":
        return logits.detach().argmax(dim=1, keepdim=True)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (a probability), got {threshold}")
    return (logits.detach() > math.log(threshold / (1 - threshold))).long()


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """float32 probabilities, the logits' shape: softmax over channels (multiclass) or sigmoid (binary, multilabel)."""
    _check_logits(logits, task)
    logits = logits.detach()
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


def _hard(logits: torch.Tensor, target: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted, true and valid masks, bool ``[N, K, H, W]`` (valid may be ``[N, 1, H, W]``)."""
    check_inputs(logits, target, task)
    logits, target = logits.detach(), target.detach()
    truth, valid = one_hot(target, task, logits.shape[1])
    if task == "multiclass":
        classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        pred = logits.argmax(dim=1, keepdim=True) == classes
    else:
        pred = logits > 0
    return pred & valid, truth, valid


def counts(logits: torch.Tensor, target: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per sample and class, int64 ``[N, K]`` (valid pixels).

    Counts stay exact integers; the ratios built from them are float32 (relative error ~1e-7 at any image size;
    float64 would be finer but MPS has none).
    """
    pred, truth, _ = _hard(logits, target, task)
    return (pred & truth).sum(PIXEL_DIMS), (pred & ~truth).sum(PIXEL_DIMS), (~pred & truth).sum(PIXEL_DIMS)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, NaN where the denominator is 0; float64 counts give float64, others float32."""
    dtype = torch.float64 if denominator.dtype == torch.float64 else torch.float32
    numerator, denominator = numerator.to(dtype), denominator.to(dtype)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), math.nan)


def dice_ratio(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``2TP / (2TP + FP + FN)`` of counts of any shape; NaN where all three are 0."""
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou_ratio(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FP + FN)`` of counts of any shape; NaN where all three are 0."""
    return _ratio(tp, tp + fp + fn)


def precision_ratio(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FP)`` of counts of any shape; NaN where nothing is predicted."""
    del fn  # one signature for every ratio
    return _ratio(tp, tp + fp)


def recall_ratio(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FN)`` of counts of any shape; NaN where the truth is empty."""
    del fp  # one signature for every ratio
    return _ratio(tp, tp + fn)


def dice(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Dice coefficient ``2TP / (2TP + FP + FN)`` of the hard prediction, float32 ``[N, K]`` in [0, 1]; NaN where
    truth and prediction are both empty."""
    return dice_ratio(*counts(logits, target, task))


def f1(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """F1 score of the hard prediction, float32 ``[N, K]`` (NaN as for :func:`dice`).

    Per class, F1 (harmonic mean of precision and recall) equals the dice coefficient; it is kept under its own name
    because classification-minded readers and configs look for it.
    """
    return dice(logits, target, task)


def iou(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Intersection over union (Jaccard) ``TP / (TP + FP + FN)`` of the hard prediction, float32 ``[N, K]``; NaN
    where truth and prediction are both empty."""
    return iou_ratio(*counts(logits, target, task))


def precision(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Precision ``TP / (TP + FP)`` of the hard prediction, float32 ``[N, K]``; NaN where nothing is predicted."""
    return precision_ratio(*counts(logits, target, task))


def recall(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Recall ``TP / (TP + FN)`` of the hard prediction, float32 ``[N, K]``; NaN where the truth is empty."""
    return recall_ratio(*counts(logits, target, task))


# The project's metrics as ratios of counts: what their pooled value (all pixels together) is.
RATIOS: dict[Metric, Callable[..., torch.Tensor]] = {
    dice: dice_ratio,
    f1: dice_ratio,
    iou: iou_ratio,
    precision: precision_ratio,
    recall: recall_ratio,
}


def ratio_of(metric: Metric) -> Callable[..., torch.Tensor] | None:
    """The ratio of counts that ``metric`` is (through ``functools.partial``), or None for another function."""
    while isinstance(metric, functools.partial):
        metric = metric.func
    return RATIOS.get(metric)


def confusion_matrix(logits: torch.Tensor, target: torch.Tensor, task: str, num_classes: int) -> torch.Tensor:
    """Pixel counts over the batch's valid pixels, int64 ``[K, K]``: rows the true class, columns the predicted one.

    binary gives ``[2, 2]`` (background, foreground) for ``num_classes`` 1 or 2. multilabel has none (each label is
    its own binary problem, and a pixel may hold several): ValueError, as for logits with other than
    ``num_classes`` channels (multiclass).
    """
    if task == "multilabel":
        raise ValueError("task 'multilabel' has no confusion matrix: a pixel may hold several labels")
    check_inputs(logits, target, task)
    if task == "binary":
        num_classes = 2
        pred = (logits.detach() > 0).long()
    else:
        if logits.shape[1] != num_classes:
            raise ValueError(f"{num_classes} classes but logits {tuple(logits.shape)} have {logits.shape[1]} channels")
        pred = logits.detach().argmax(dim=1, keepdim=True)
    valid = target >= 0
    truth = (target > 0.5).long() if task == "binary" else target.long()
    pairs = truth[valid] * num_classes + pred[valid]
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes).cpu()


def with_task(metric: Metric, task: str) -> Metric:
    """``metric`` with ``task=`` bound when it takes one (also when bound already: the later binding wins), else as
    it is (a metric of old, ``metric(logits, target) -> scalar``, binary only)."""
    try:
        takes_task = "task" in inspect.signature(metric).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_task = False
    return functools.partial(metric, task=task) if takes_task else metric
