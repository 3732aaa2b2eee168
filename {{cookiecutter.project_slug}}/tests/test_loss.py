"""Losses and metrics on hand-computed cases, empty masks, and the per-sample mean they all promise."""

import math

import pytest
import torch

from utils.losses import dice_bce, smooth_dice_loss
from utils.metrics import dice, f1, iou, precision, recall

LOSSES = {"dice_bce": dice_bce, "smooth_dice_loss": smooth_dice_loss}
METRICS = {"dice": dice, "iou": iou, "f1": f1, "precision": precision, "recall": recall}

BIG = 20.0  # a logit whose sigmoid is 1 - 2e-9: "certain" without being infinite


def logits_from(mask: torch.Tensor) -> torch.Tensor:
    """Confident logits predicting exactly ``mask``."""
    return (mask * 2 - 1) * BIG


def masks_4x4() -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 prediction covering the left half and a target covering the top half: they share 4 of 8 pixels."""
    pred = torch.zeros(1, 1, 4, 4)
    pred[..., :, :2] = 1
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    return pred, target


def test_half_overlap_metrics_match_hand_computation():
    """Left half vs top half of a 4x4: TP = FP = FN = 4."""
    pred, target = masks_4x4()
    logits = logits_from(pred)
    # TP = 4, FP = 4, FN = 4.
    assert dice(logits, target).item() == pytest.approx(2 * 4 / (2 * 4 + 4 + 4))  # 1/2
    assert iou(logits, target).item() == pytest.approx(4 / 12)
    assert precision(logits, target).item() == pytest.approx(0.5)
    assert recall(logits, target).item() == pytest.approx(0.5)


def test_two_thirds_dice():
    """One pixel of target, two predicted: dice 2/3."""
    # Prediction covers 2 pixels, target 1 of them: TP 1, FP 1, FN 0 -> dice 2/3, precision 1/2, recall 1.
    pred = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    logits = logits_from(pred)
    assert dice(logits, target).item() == pytest.approx(2 / 3)
    assert f1(logits, target).item() == pytest.approx(2 / 3)
    assert iou(logits, target).item() == pytest.approx(1 / 2)
    assert precision(logits, target).item() == pytest.approx(1 / 2)
    assert recall(logits, target).item() == pytest.approx(1.0)


def test_threshold_is_logit_zero():
    """Hard predictions threshold logits at 0 (probability 0.5)."""
    target = torch.tensor([[[[1.0, 0.0]]]])
    # Tiny positive logit counts as foreground, tiny negative as background.
    assert dice(torch.tensor([[[[0.01, -0.01]]]]), target).item() == pytest.approx(1.0)
    assert dice(torch.tensor([[[[-0.01, 0.01]]]]), target).item() == pytest.approx(0.0, abs=1e-6)


def test_perfect_prediction_scores_one_and_loss_near_zero():
    """A perfect prediction scores 1.0 on every metric and ~0 loss."""
    torch.manual_seed(0)
    target = (torch.rand(3, 1, 16, 16) > 0.6).float()
    logits = logits_from(target)
    for name, metric in METRICS.items():
        assert metric(logits, target).item() == pytest.approx(1.0), name
    assert smooth_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_bce(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_completely_wrong_prediction():
    """A confidently inverted prediction scores 0 and loses about the logit size."""
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    logits = logits_from(1 - target)
    assert dice(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert iou(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    # Soft dice of confident wrong probabilities: (0 + 1) / (16 + 1).
    assert smooth_dice_loss(logits, target).item() == pytest.approx(1 - 1 / 17, abs=1e-6)
    # BCE of a confident wrong logit is about the logit itself.
    assert dice_bce(logits, target).item() == pytest.approx(1 - 1 / 17 + BIG, rel=1e-4)


def test_soft_dice_on_uncertain_prediction():
    """Soft dice and BCE of probability 1/2 everywhere, by hand."""
    # Logits 0 -> probability 1/2 everywhere; target has 2 of 4 pixels. Intersection 1, |P| 2, |T| 2.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert smooth_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(1 - 2 * 1 / 4)
    assert smooth_dice_loss(logits, target, smooth=1.0).item() == pytest.approx(1 - 3 / 5)
    assert dice_bce(logits, target).item() == pytest.approx(1 - 3 / 5 + math.log(2))


def test_empty_masks_are_finite_and_in_range():
    """Empty predictions and targets give finite values; empty vs empty is 1.0."""
    empty = torch.zeros(2, 1, 8, 8)
    full = torch.ones(2, 1, 8, 8)
    cases = {
        "empty pred, empty target": (logits_from(empty), empty),
        "empty pred, full target": (logits_from(empty), full),
        "full pred, empty target": (logits_from(full), empty),
    }
    for case, (logits, target) in cases.items():
        for name, fn in {**METRICS, **LOSSES}.items():
            value = fn(logits, target)
            assert value.dim() == 0, (case, name)
            assert torch.isfinite(value), (case, name)
            if name in METRICS:
                assert 0.0 <= value.item() <= 1.0, (case, name)
    # Nothing to find and nothing found is a perfect score.
    for name, metric in METRICS.items():
        assert metric(logits_from(empty), empty).item() == pytest.approx(1.0), name
    assert dice(logits_from(empty), full).item() == pytest.approx(0.0, abs=1e-6)
    assert dice(logits_from(full), empty).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", [*LOSSES, *METRICS])
def test_batch_value_is_mean_of_per_sample_values(name):
    """A batch of two gives the mean of the two singletons (the loop relies on it)."""
    fn = {**LOSSES, **METRICS}[name]
    torch.manual_seed(1)
    # Samples with very different foreground sizes, where a pixel-pooled value would differ from the sample mean.
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :1, :2] = 1
    target[1, :, :6, :] = 1
    logits = torch.randn(2, 1, 8, 8) * 3
    batch = fn(logits, target).item()
    singles = [fn(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert batch == pytest.approx(sum(singles) / 2, rel=1e-5)


def test_losses_have_gradients():
    """Losses backpropagate finite, non-zero gradients."""
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    for name, loss_fn in LOSSES.items():
        logits.grad = None
        loss_fn(logits, target).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), name
        assert logits.grad.abs().sum() > 0, name


def test_half_precision_logits_are_handled():
    """bfloat16 logits (mixed precision) are summed in float32."""
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    logits = logits_from(target).to(torch.bfloat16)
    assert smooth_dice_loss(logits, target).dtype == torch.float32
    assert dice(logits, target).item() == pytest.approx(1.0)


def test_shape_mismatch_is_refused():
    """Shapes that would broadcast are refused."""
    with pytest.raises(ValueError, match="same shape"):
        dice(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
