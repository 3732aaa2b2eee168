"""Metrics for the three tasks: ``metric(logits, target, task="binary") -> [N, K]``, per sample and class.

Inputs as in :mod:`utils.losses` (``logits`` ``[N, K, H, W]``, the target of the task; pixels with target < 0 count
nowhere; a task that does not fit the shapes raises ValueError). Metrics are hard: binary and multilabel channels
predict a pixel when its logit is > 0 (probability > 0.5), multiclass predicts the argmax class. They use ``EPS`` in
numerator and denominator, so they stay finite and in [0, 1] on empty masks: an empty prediction of an empty target
scores 1.0, and precision (recall) of an empty prediction (target) is 1.0 as nothing was wrongly claimed (missed).

:func:`per_class_metrics` turns them into the scalar functions the training loops log (``val_dice``,
``val_dice_<class>``); :func:`confusion_matrix`, :func:`predicted_labels` and :func:`probabilities` serve predict
and evaluate.
"""

import functools
import inspect
import math
import weakref
from collections.abc import Callable

import torch

from utils.losses import PIXEL_DIMS, TASKS, check_inputs, one_hot

EPS = 1e-6

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


def _counts(logits: torch.Tensor, target: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per sample and class, int64 ``[N, K]``.

    Counts stay exact integers; the ratios built from them are float32 (relative error ~1e-7 at any image size;
    float64 would be finer but MPS has none).
    """
    pred, truth, _ = _hard(logits, target, task)
    return (pred & truth).sum(PIXEL_DIMS), (pred & ~truth).sum(PIXEL_DIMS), (~pred & truth).sum(PIXEL_DIMS)


def dice(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Dice coefficient ``2TP / (2TP + FP + FN)`` of the hard prediction, float32 ``[N, K]`` in [0, 1]."""
    tp, fp, fn = _counts(logits, target, task)
    return (2 * tp + EPS) / (2 * tp + fp + fn + EPS)


def f1(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """F1 score of the hard prediction, float32 ``[N, K]``.

    Per class, F1 (harmonic mean of precision and recall) equals the dice coefficient; it is kept under its own name
    because classification-minded readers and configs look for it.
    """
    return dice(logits, target, task)


def iou(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Intersection over union (Jaccard) ``TP / (TP + FP + FN)`` of the hard prediction, float32 ``[N, K]``."""
    tp, fp, fn = _counts(logits, target, task)
    return (tp + EPS) / (tp + fp + fn + EPS)


def precision(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Precision ``TP / (TP + FP)`` of the hard prediction, float32 ``[N, K]`` (1.0 for an empty prediction)."""
    tp, fp, _ = _counts(logits, target, task)
    return (tp + EPS) / (tp + fp + EPS)


def recall(logits: torch.Tensor, target: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Recall ``TP / (TP + FN)`` of the hard prediction, float32 ``[N, K]`` (1.0 for an empty target)."""
    tp, _, fn = _counts(logits, target, task)
    return (tp + EPS) / (tp + fn + EPS)


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


def _with_task(metric: Metric, task: str) -> Metric:
    """``metric`` with ``task=`` bound when it takes one (also when bound already: the later binding wins), else as
    it is (a metric of old, ``metric(logits, target) -> scalar``, binary only)."""
    try:
        takes_task = "task" in inspect.signature(metric).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_task = False
    return functools.partial(metric, task=task) if takes_task else metric


class _LastValues:
    """One metric's ``[N, K]`` values for the last ``(logits, target)`` pair it saw (a one-entry identity cache).

    Ignite's Loss metric and fastai's metrics take one scalar function per logged column, so ``val_dice``,
    ``val_dice_<class>``... each call the metric on the same batch; the cache computes it once. The entry holds weak
    references (no batch kept alive) and the tensors' versions (an in-place change recomputes); pickling drops it.
    """

    def __init__(self, metric: Metric, task: str) -> None:
        self.metric = _with_task(metric, task)
        self.task = task
        self.entry: tuple[weakref.ref, weakref.ref, int, int, torch.Tensor] | None = None

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.entry is not None:
            logits_ref, target_ref, logits_version, target_version, values = self.entry
            if (
                logits_ref() is logits
                and target_ref() is target
                and (logits._version, target._version) == (logits_version, target_version)
            ):
                return values
        values = self.metric(logits, target)
        if values.dim() == 0 and self.task == "binary":
            values = values.view(1, 1)  # a metric of old, a scalar (the mean over samples) of the one class
        self.entry = (weakref.ref(logits), weakref.ref(target), logits._version, target._version, values)
        return values

    def __getstate__(self) -> dict:
        return {**self.__dict__, "entry": None}  # weak references cannot be pickled, and the entry is stale anyway


class ClassMetric:
    """A scalar function ``(logits, target) -> 0-dim tensor`` of :func:`per_class_metrics`: one class's mean over
    samples (``index``), or for ``index=None`` the mean over classes of those means. ``__name__`` is the column name
    (fastai names its metrics so)."""

    def __init__(self, values: _LastValues, index: int | None, name: str, num_classes: int) -> None:
        self.values = values
        self.index = index
        self.num_classes = num_classes
        self.__name__ = self.__qualname__ = name

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = self.values(logits, target)  # [N, K]
        if values.dim() != 2:
            raise ValueError(
                f"{self.__name__}: the metric gave values of shape {tuple(values.shape)} for logits "
                f"{tuple(logits.shape)}; per-class columns need [N, K] (see utils/metrics.py)"
            )
        if values.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.__name__}: {self.num_classes} CLASSES but logits {tuple(logits.shape)} have "
                f"{values.shape[1]} channels; set CLASSES to one name per output channel"
            )
        return values.mean() if self.index is None else values[:, self.index].mean()

    def __repr__(self) -> str:
        return f"<metric {self.__name__}>"


def per_class_metrics(metrics: dict[str, Metric], classes: list[str], task: str) -> dict[str, ClassMetric]:
    """The scalar functions to log for ``metrics`` (name -> per-sample per-class metric such as :func:`dice`, with or
    without ``task`` bound; a metric without a ``task`` parameter returning a scalar is taken as it is, binary only).

    binary (one class, the foreground): ``{name: mean over samples}``. multiclass and multilabel: for each metric
    ``name`` (the mean over classes of each class's mean over samples) followed by ``f"{name}_{class}"`` for each of
    ``classes``. Each function returns a 0-dim float32 tensor; all of one metric share one computation per batch.
    ValueError for an unknown task, a binary task with other than one class, or fewer than two classes otherwise.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if task == "binary" and len(classes) != 1:
        raise ValueError(f"task 'binary' has one class (the foreground), got CLASSES {classes}")
    if task != "binary" and len(classes) < 2:
        raise ValueError(f"task {task!r} needs two CLASSES or more, got {classes}")
    functions = {}
    for name, metric in metrics.items():
        values = _LastValues(metric, task)
        functions[name] = ClassMetric(values, None, name, len(classes))
        if task != "binary":
            for index, class_name in enumerate(classes):
                functions[f"{name}_{class_name}"] = ClassMetric(values, index, f"{name}_{class_name}", len(classes))
    return functions
