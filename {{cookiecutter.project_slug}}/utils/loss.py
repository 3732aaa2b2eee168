"""Losses and metrics for binary segmentation.

Every function takes ``logits`` ``[N, 1, H, W]`` (the raw model output, before the sigmoid) and ``target``
``[N, 1, H, W]`` holding 0 or 1, and returns a scalar tensor: the MEAN OVER SAMPLES of a per-sample value.

Why per sample: the training loops accumulate ``value * batch_size`` and divide by the number of samples seen, which
gives the exact epoch mean even when the last batch is short. That only holds when the value of a batch is the mean
of its samples' values (a batch of two gives the mean of the two singletons), so every function here keeps to it.

Metrics are hard: a pixel is predicted foreground when its logit is > 0 (probability > 0.5). They use ``EPS`` in
numerator and denominator, so they stay finite and in [0, 1] on empty masks: an empty prediction of an empty
target scores 1.0, and precision (recall) of an empty prediction (target) is 1.0 as nothing was wrongly claimed
(missed).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "LOSSES",
    "METRICS",
    "dice",
    "dice_bce",
    "f1",
    "get_loss",
    "get_metric",
    "iou",
    "precision",
    "recall",
    "smooth_dice_loss",
]

EPS = 1e-6

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_SAMPLE_DIMS = (1, 2, 3)  # everything but the batch dimension


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` in at least float32: sums over a whole image lose too much precision in half floats."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse inputs that would broadcast silently into a wrong value."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    if logits.dim() != 4:
        raise ValueError(f"expected [N, 1, H, W] tensors, got shape {tuple(logits.shape)}")


# --------------------------------------------------------------------------------------------------------------
# Losses (differentiable)
# --------------------------------------------------------------------------------------------------------------


def smooth_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss on sigmoid probabilities: mean over samples of ``1 - (2|P.T| + s) / (|P| + |T| + s)``.

    ``smooth`` keeps the loss defined (0 for an empty target predicted empty) and its gradient tame on small masks.
    """
    _check(logits, target)
    probs = torch.sigmoid(_wide(logits))
    target = target.to(probs.dtype)
    intersection = (probs * target).sum(_SAMPLE_DIMS)
    total = probs.sum(_SAMPLE_DIMS) + target.sum(_SAMPLE_DIMS)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth dice loss plus binary cross-entropy with logits (per-sample pixel mean, then mean over samples).

    BCE gives well-scaled per-pixel gradients from the first step; dice counters the foreground/background
    imbalance of small objects.
    """
    _check(logits, target)
    logits = _wide(logits)
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(_SAMPLE_DIMS).mean()
    return smooth_dice_loss(logits, target) + bce


# --------------------------------------------------------------------------------------------------------------
# Metrics (hard predictions: logits > 0)
# --------------------------------------------------------------------------------------------------------------


def _counts(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample true positives, false positives and false negatives as float tensors [N]."""
    _check(logits, target)
    pred = logits.detach() > 0
    truth = target.detach() > 0.5
    tp = (pred & truth).sum(_SAMPLE_DIMS).float()
    fp = (pred & ~truth).sum(_SAMPLE_DIMS).float()
    fn = (~pred & truth).sum(_SAMPLE_DIMS).float()
    return tp, fp, fn


def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice coefficient ``2TP / (2TP + FP + FN)`` of the hard prediction, mean over samples."""
    tp, fp, fn = _counts(logits, target)
    return ((2 * tp + EPS) / (2 * tp + fp + fn + EPS)).mean()


def f1(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F1 score of the hard prediction, mean over samples.

    For binary masks F1 (harmonic mean of precision and recall) equals the dice coefficient; it is kept under its
    own name because classification-minded readers and configs look for it.
    """
    return dice(logits, target)


def iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Intersection over union (Jaccard) ``TP / (TP + FP + FN)`` of the hard prediction, mean over samples."""
    tp, fp, fn = _counts(logits, target)
    return ((tp + EPS) / (tp + fp + fn + EPS)).mean()


def precision(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Precision ``TP / (TP + FP)`` of the hard prediction, mean over samples (1.0 for an empty prediction)."""
    tp, fp, _ = _counts(logits, target)
    return ((tp + EPS) / (tp + fp + EPS)).mean()


def recall(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recall ``TP / (TP + FN)`` of the hard prediction, mean over samples (1.0 for an empty target)."""
    tp, _, fn = _counts(logits, target)
    return ((tp + EPS) / (tp + fn + EPS)).mean()


# --------------------------------------------------------------------------------------------------------------
# Look-up by name (configs and the command line name losses and metrics as strings)
# --------------------------------------------------------------------------------------------------------------

LOSSES: dict[str, LossFn] = {
    "smooth_dice_loss": smooth_dice_loss,
    "dice_bce": dice_bce,
}

METRICS: dict[str, LossFn] = {
    "dice": dice,
    "iou": iou,
    "f1": f1,
    "precision": precision,
    "recall": recall,
}


def get_loss(name: str) -> LossFn:
    """Return the loss function called ``name``; ValueError listing the choices for an unknown name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def get_metric(name: str) -> LossFn:
    """Return the metric function called ``name``; ValueError listing the choices for an unknown name."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}") from None
