"""Metrics for binary segmentation: ``metric(logits, target) -> scalar``, the mean over samples of a per-sample value.

Inputs as in :mod:`utils.losses`: ``logits`` ``[N, 1, H, W]`` and ``target`` ``[N, 1, H, W]`` holding 0 or 1.
Metrics are hard: a pixel is predicted foreground when its logit is > 0 (probability > 0.5). They use ``EPS`` in
numerator and denominator, so they stay finite and in [0, 1] on empty masks: an empty prediction of an empty
target scores 1.0, and precision (recall) of an empty prediction (target) is 1.0 as nothing was wrongly claimed
(missed).
"""

import torch

from utils.losses import SAMPLE_DIMS, check_shapes

EPS = 1e-6


def _counts(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample true positives, false positives and false negatives as float tensors [N]."""
    check_shapes(logits, target)
    pred = logits.detach() > 0
    truth = target.detach() > 0.5
    tp = (pred & truth).sum(SAMPLE_DIMS).float()
    fp = (pred & ~truth).sum(SAMPLE_DIMS).float()
    fn = (~pred & truth).sum(SAMPLE_DIMS).float()
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
