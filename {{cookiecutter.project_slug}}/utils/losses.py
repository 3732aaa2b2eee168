"""Losses for binary segmentation: ``loss(logits, target) -> scalar``, the mean over samples of a per-sample value.

Every function takes ``logits`` ``[N, 1, H, W]`` (the raw model output, before the sigmoid) and ``target``
``[N, 1, H, W]`` holding 0 or 1.

Why per sample: the training loops accumulate ``value * batch_size`` and divide by the number of samples seen, which
gives the exact epoch mean even when the last batch is short. That only holds when the value of a batch is the mean
of its samples' values (a batch of two gives the mean of the two singletons), so every function here keeps to it.
"""

import torch
import torch.nn.functional as F

SAMPLE_DIMS = (1, 2, 3)  # everything but the batch dimension


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` in at least float32: sums over a whole image lose too much precision in half floats."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse inputs that would broadcast silently into a wrong value (ValueError)."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    if logits.dim() != 4:
        raise ValueError(f"expected [N, 1, H, W] tensors, got shape {tuple(logits.shape)}")


def smooth_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss on sigmoid probabilities: mean over samples of ``1 - (2|P.T| + s) / (|P| + |T| + s)``.

    ``smooth`` keeps the loss defined (0 for an empty target predicted empty) and its gradient tame on small masks.
    """
    check_shapes(logits, target)
    probs = torch.sigmoid(_wide(logits))
    target = target.to(probs.dtype)
    intersection = (probs * target).sum(SAMPLE_DIMS)
    total = probs.sum(SAMPLE_DIMS) + target.sum(SAMPLE_DIMS)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth dice loss plus binary cross-entropy with logits (per-sample pixel mean, then mean over samples).

    BCE gives well-scaled per-pixel gradients from the first step; dice counters the foreground/background
    imbalance of small objects.
    """
    check_shapes(logits, target)
    logits = _wide(logits)
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(SAMPLE_DIMS).mean()
    return smooth_dice_loss(logits, target) + bce
