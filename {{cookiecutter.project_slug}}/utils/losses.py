"""Losses for the three tasks: ``loss(logits, target, task="binary", class_weights=None) -> scalar``.

``logits`` ``[N, K, H, W]`` is the raw model output (before the sigmoid or softmax); ``target`` follows the targets
contract of utils/data/targets.py:

- ``binary``: ``K == 1``; target float ``[N, 1, H, W]`` holding 0 or 1 (sigmoid of the one channel);
- ``multiclass``: ``K >= 2``; target integer ``[N, 1, H, W]`` holding class indices ``0..K-1`` (softmax over K);
- ``multilabel``: target float ``[N, K, H, W]`` holding 0 or 1 per label (K independent sigmoids).

A target pixel below 0 (``IGNORE``: padding, no-data, ``IGNORE_INDEX``) counts in neither the loss nor its gradient:
its logits are replaced by 0 before anything else, so even NaN logits there leave the loss and the gradient finite.
A sample whose pixels are all ignored has loss 0. ``class_weights`` (one number per class, from
``LOSS_CONFIG["class_weights"]``) weigh the classes in dice and cross-entropy; see each function. Shapes or dtypes
that do not fit the task raise ValueError naming the task and the shapes, so that a wrong task is refused at the
sanity check instead of computed silently.

Why per sample: the training loops accumulate ``value * batch_size`` and divide by the number of samples seen, which
gives the exact epoch mean even when the last batch is short. That only holds when the value of a batch is the mean
of its samples' values (a batch of two gives the mean of the two singletons), so every function here keeps to it.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from utils.data.targets import IGNORE, TASKS  # the encoder's marker of pixels that count nowhere, and the tasks

PIXEL_DIMS = (2, 3)  # height and width: sums over them give per-sample, per-class values [N, K]
TINY = 1e-12  # a denominator floor where a sample has no valid pixel (its numerator is then 0 too)

Weights = Sequence[float] | torch.Tensor | None


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` in at least float32: sums over a whole image lose too much precision in half floats."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def check_inputs(logits: torch.Tensor, target: torch.Tensor, task: str) -> None:
    """Refuse logits and targets that do not fit ``task`` (ValueError naming the task and the shapes).

    binary: logits ``[N, 1, H, W]``, target ``[N, 1, H, W]``; multiclass: logits ``[N, K, H, W]`` with ``K >= 2``,
    target integer ``[N, 1, H, W]``; multilabel: target of the logits' shape. A binary task given 3-channel logits
    is the old silent error (channel 0 scored as the foreground), hence the hint to set TASK.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    shapes = f"logits {tuple(logits.shape)} and target {tuple(target.shape)}"
    if logits.dim() != 4 or target.dim() != 4:
        raise ValueError(f"task {task!r} needs [N, K, H, W] logits and targets, got {shapes}")
    n, k, h, w = logits.shape
    if task == "binary" and k != 1:
        raise ValueError(
            f"task 'binary' needs logits with 1 channel, got {shapes}: "
            f"a model with {k} output channels needs TASK 'multiclass' or 'multilabel' and {k} CLASSES"
        )
    if task == "multiclass" and k < 2:
        raise ValueError(f"task 'multiclass' needs logits with 2 channels or more, got {shapes}")
    channels = k if task == "multilabel" else 1
    if tuple(target.shape) != (n, channels, h, w):
        raise ValueError(f"task {task!r} needs a target of shape {(n, channels, h, w)}, got {shapes}")
    if task == "multiclass" and (target.dtype.is_floating_point or target.dtype == torch.bool):
        raise ValueError(f"task 'multiclass' needs an integer target (class indices), got {target.dtype} for {shapes}")


def one_hot(target: torch.Tensor, task: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The truth and valid masks of a checked target, both bool ``[N, K, H, W]`` (valid ``[N, 1, H, W]`` for
    binary and multiclass, broadcasting over K).

    Multiclass indices become K channels by comparison with ``0..K-1`` (no device sync, unlike ``F.one_hot``);
    ignored pixels are False in the truth.
    """
    valid = target >= 0
    if task == "multiclass":
        classes = torch.arange(num_classes, device=target.device).view(1, -1, 1, 1)
        return (target == classes) & valid, valid
    return (target > 0.5) & valid, valid


def _weights(class_weights: Weights, num_classes: int, device: torch.device) -> torch.Tensor | None:
    """``class_weights`` as a float32 tensor [K] on ``device`` (ValueError for a wrong count or negative values)."""
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    if weights.numel() != num_classes:
        raise ValueError(f"class_weights has {weights.numel()} values for {num_classes} classes: give one per class")
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"class_weights must be >= 0 and not all 0, got {weights.tolist()}")
    return weights.to(device)


def _masked_logits(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """float32 logits with ignored pixels set to 0: the ``where`` comes first, so their gradient is exactly 0."""
    return torch.where(valid, _wide(logits), 0.0)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, task: str = "binary", class_weights: Weights = None, smooth: float = 1.0
) -> torch.Tensor:
    """Soft dice loss ``1 - (2|P.T| + s) / (|P| + |T| + s)`` per sample and class, averaged over classes
    (weighted by ``class_weights``), then over samples; a scalar in [0, 1].

    P are sigmoid (binary, multilabel) or softmax (multiclass, background class included) probabilities, T the
    one-hot truth; both are 0 at ignored pixels. ``smooth`` keeps the loss defined (0 for an empty class predicted
    empty) and its gradient tame on small masks; with ``smooth=0`` a class with neither is counted as perfect.
    """
    check_inputs(logits, target, task)
    truth, valid = one_hot(target, task, logits.shape[1])
    logits = _masked_logits(logits, valid)
    probs = torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)
    probs = probs * valid
    truth = truth.to(probs.dtype)
    intersection = (probs * truth).sum(PIXEL_DIMS)
    total = probs.sum(PIXEL_DIMS) + truth.sum(PIXEL_DIMS)
    # A class absent from both (or a sample without valid pixels) scores 1 even with smooth=0; the clamp keeps the
    # branch that ``where`` drops finite, as a NaN there would still poison the gradient.
    score = torch.where(total + smooth > 0, (2 * intersection + smooth) / (total + smooth).clamp_min(TINY), 1.0)
    per_class = 1 - score  # [N, K]
    weights = _weights(class_weights, logits.shape[1], logits.device)
    if weights is None:
        return per_class.mean(1).mean()
    return ((per_class * weights).sum(1) / weights.sum()).mean()


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, task: str = "binary", class_weights: Weights = None
) -> torch.Tensor:
    """Cross-entropy per sample, a weighted mean over its valid pixels, then the mean over samples; a scalar >= 0.

    multiclass: ``F.cross_entropy`` (softmax) with ``ignore_index=IGNORE``; a pixel of class c weighs
    ``class_weights[c]``, normalised per sample by the sum of its pixels' weights as PyTorch's weighted mean is.
    binary, multilabel: binary cross-entropy with logits per channel; ``class_weights[k]`` weighs the positive pixels
    of channel k against its negatives (weight 1), normalised the same way, so binary with ``[w]`` equals a two-class
    multiclass with weights ``[1, w]``.
    """
    check_inputs(logits, target, task)
    truth, valid = one_hot(target, task, logits.shape[1])
    logits = _masked_logits(logits, valid)
    weights = _weights(class_weights, logits.shape[1], logits.device)
    if task == "multiclass":
        labels = target[:, 0].long()
        losses = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE, reduction="none")  # [N, H, W]
        pixel_weights = valid[:, 0].float() if weights is None else weights[labels.clamp_min(0)] * valid[:, 0]
    else:
        truth = truth.to(logits.dtype)
        pixel_weights = valid.expand_as(logits).float()
        if weights is not None:
            pixel_weights = pixel_weights * torch.where(truth > 0, weights.view(1, -1, 1, 1), 1.0)
        losses = F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * pixel_weights
    sample_dims = tuple(range(1, losses.dim()))
    return (losses.sum(sample_dims) / pixel_weights.sum(sample_dims).clamp_min(TINY)).mean()


def dice_ce(
    logits: torch.Tensor, target: torch.Tensor, task: str = "binary", class_weights: Weights = None
) -> torch.Tensor:
    """Soft dice loss plus cross-entropy (the default LOSS): a scalar >= 0, mean over samples.

    Cross-entropy gives well-scaled per-pixel gradients from the first step; dice counters the foreground/background
    imbalance of small objects and rare classes.
    """
    return dice_loss(logits, target, task, class_weights) + cross_entropy(logits, target, task, class_weights)


# Old names, kept so that configs and saved runs that name them (utils.losses.dice_bce, smooth_dice_loss) still load:
# dice_bce was the binary dice + BCE, which dice_ce is for task "binary"; smooth_dice_loss was dice_loss.
dice_bce = dice_ce
smooth_dice_loss = dice_loss
