"""Metrics of the three tasks: hand-computed cases, nnU-Net's rule for empty masks, MONAI as the reference, the
confusion matrix and hard predictions (the label maps TensorBoard shows: tests/test_tensorboard.py). Their means:
tests/test_metric_sums.py."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.losses import IGNORE
from utils.metric_sums import MetricSums
from utils.metrics import (
    confusion_matrix,
    dice,
    f1,
    iou,
    precision,
    predicted_labels,
    probabilities,
    recall,
)

METRICS = {"dice": dice, "iou": iou, "f1": f1, "precision": precision, "recall": recall}
TASKS = ("binary", "multiclass", "multilabel")
BIG = 20.0


def random_case(task: str, n: int = 4, k: int = 5, size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and a target of ``task`` without ignored pixels; small images so that some classes are empty."""
    generator = torch.Generator().manual_seed(seed)
    k = 1 if task == "binary" else k
    logits = torch.randn(n, k, size, size, generator=generator) * 2
    if task == "multiclass":
        return logits, torch.randint(0, k, (n, 1, size, size), generator=generator)
    return logits, (torch.rand(n, k, size, size, generator=generator) > 0.8).float()


def test_binary_hand_computed_values():
    """Left half vs top half of a 4x4 (TP = FP = FN = 4), and one target pixel predicted with a second."""
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    logits = torch.full((1, 1, 4, 4), -BIG)
    logits[..., :2] = BIG
    expected = {"dice": 1 / 2, "f1": 1 / 2, "iou": 4 / 12, "precision": 1 / 2, "recall": 1 / 2}
    for name, metric in METRICS.items():
        value = metric(logits, target)
        assert value.shape == (1, 1) and value.dtype == torch.float32, name
        assert value.item() == pytest.approx(expected[name]), name
    # TP 1, FP 1, FN 0; a tiny positive logit counts as predicted (threshold at logit 0).
    logits, target = torch.tensor([[[[BIG, 0.01, -0.01]]]]), torch.tensor([[[[1.0, 0.0, 0.0]]]])
    expected = {"dice": 2 / 3, "f1": 2 / 3, "iou": 1 / 2, "precision": 1 / 2, "recall": 1.0}
    for name, metric in METRICS.items():
        assert metric(logits, target).item() == pytest.approx(expected[name]), name


@pytest.mark.parametrize("task", TASKS)
def test_empty_masks_are_undefined_not_perfect(task):
    """nnU-Net's rule: nothing to find and nothing found is NaN (it scored 1.0 with the old EPS smoothing); finding
    something where nothing is scores dice 0 (precision 0, recall NaN), finding nothing of something dice 0 (recall 0,
    precision NaN)."""
    empty = torch.zeros(2, 3, 4, 4) if task == "multilabel" else torch.zeros(2, 1, 4, 4)
    target = empty.long() if task == "multiclass" else empty
    k = 3 if task != "binary" else 1
    none_predicted = torch.full((2, k, 4, 4), -BIG)
    if task == "multiclass":
        none_predicted[:, 0] = BIG  # all background: every other class empty in both
    for name, metric in METRICS.items():
        values = metric(none_predicted, target, task)
        assert values.shape == (2, k) and values.dtype == torch.float32, name
        undefined = values[:, 1:] if task == "multiclass" else values  # multiclass: the background is perfect
        assert undefined.isnan().all(), name
    if task != "multiclass":
        found_on_empty, missed = (-none_predicted, target), (none_predicted, 1 - target)
        expected = {"dice": (0.0, 0.0), "f1": (0.0, 0.0), "iou": (0.0, 0.0)}  # (found where nothing is, missed all)
        expected.update(precision=(0.0, math.nan), recall=(math.nan, 0.0))
        for name, metric in METRICS.items():
            for case, value in zip((found_on_empty, missed), expected[name], strict=True):
                torch.testing.assert_close(metric(*case, task), torch.full((2, k), value), equal_nan=True, msg=name)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_dice_and_iou_equal_monai(task):
    """Per-sample, per-class dice and IoU equal MONAI's compute_dice / compute_iou on one-hot inputs (to 1e-6)."""
    monai_metrics = pytest.importorskip("monai.metrics")
    for seed in range(3):
        logits, target = random_case(task, seed=seed)
        target[0], logits[0] = 0, -BIG  # sample 0: nothing in the truth and nothing predicted but the background
        if task == "multiclass":
            logits[0, 0] = BIG
            pred = F.one_hot(logits.argmax(1), 5).permute(0, 3, 1, 2)
            truth = F.one_hot(target[:, 0], 5).permute(0, 3, 1, 2)
        else:
            pred, truth = (logits > 0).long(), target.long()
        # MONAI's ignore_empty=False scores both-empty pairs 1.0 (and ignore_empty=True makes every empty truth NaN,
        # another rule): the oracle is ignore_empty=False with the both-empty pairs masked out.
        options = {"include_background": True, "ignore_empty": False}
        both_empty = (pred.sum((2, 3)) == 0) & (truth.sum((2, 3)) == 0)
        assert both_empty.any()  # the case that matters is in the data
        for ours, oracle in ((dice, monai_metrics.compute_dice), (iou, monai_metrics.compute_iou)):
            expected = oracle(pred, truth, **options).masked_fill(both_empty, math.nan)
            torch.testing.assert_close(ours(logits, target, task), expected, atol=1e-6, rtol=0, equal_nan=True)


def test_binary_metric_refuses_multichannel_logits():
    """The old bug: a binary dice given a 3-class model's logits scored channel 0 (0.902 against a boundary 0.41)."""
    logits, target = random_case("multiclass", k=3)
    for name, metric in METRICS.items():
        with pytest.raises(ValueError, match=r"task 'binary' needs logits with 1 channel.*\(4, 3, 6, 6\).*multiclass"):
            metric(logits, target.float())
        with pytest.raises(ValueError, match="task 'binary'"):
            MetricSums({name: metric}, ["foreground"], "binary").update(logits, target.float())


@pytest.mark.parametrize("task", TASKS)
def test_ignored_pixels_count_nowhere(task):
    """Metrics over a target with its right half ignored equal those of the left half alone, whatever is predicted
    there; each row is its own sample's value."""
    logits, target = random_case(task, n=3, size=8, seed=4)
    padded = target.clone()
    padded[..., 4:] = IGNORE
    changed = logits.clone()
    changed[..., 4:] = -changed[..., 4:]
    for name, metric in METRICS.items():
        expected = metric(logits[..., :4], target[..., :4], task)
        torch.testing.assert_close(metric(logits, padded, task), expected, msg=name, equal_nan=True)
        torch.testing.assert_close(metric(changed, padded, task), expected, msg=name, equal_nan=True)
        torch.testing.assert_close(metric(logits[1:2], padded[1:2], task), expected[1:2], msg=name, equal_nan=True)


def test_confusion_matrix_counts_valid_pixels():
    """Rows truth, columns prediction, summing to the valid pixels; binary is background/foreground; no multilabel."""
    logits, target = random_case("multiclass", k=3, seed=6)
    target[0, :, :2] = IGNORE
    matrix = confusion_matrix(logits, target, "multiclass", 3)
    assert matrix.dtype == torch.int64 and matrix.shape == (3, 3)
    assert matrix.sum().item() == (target >= 0).sum().item()
    pred = logits.argmax(1, keepdim=True)
    for t in range(3):
        for p in range(3):
            assert matrix[t, p].item() == ((target == t) & (pred == p)).sum().item()
    # The matrix pools what dice computes per sample: on one sample, dice of class c is 2 M[c,c] / (row + column).
    single = confusion_matrix(logits[1:2], target[1:2], "multiclass", 3).double()
    pooled_dice = 2 * single.diag() / (single.sum(0) + single.sum(1))
    torch.testing.assert_close(dice(logits[1:2], target[1:2], "multiclass")[0].double(), pooled_dice, atol=1e-6, rtol=0)
    binary_logits = torch.tensor([[[[BIG, BIG, -BIG, -BIG, BIG]]]])
    binary_target = torch.tensor([[[[1.0, 0.0, 1.0, 0.0, float(IGNORE)]]]])
    assert confusion_matrix(binary_logits, binary_target, "binary", 1).tolist() == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="multilabel"):
        confusion_matrix(*random_case("multilabel"), "multilabel", 5)
    with pytest.raises(ValueError, match="4 classes but logits"):
        confusion_matrix(logits, target, "multiclass", 4)


def test_predicted_labels_and_probabilities():
    """Label maps of each task (int64, the metrics' threshold) and probabilities (sigmoid or softmax)."""
    logits = torch.tensor([[[[1e-9, -1e-9, 2.0]]]])
    assert predicted_labels(logits, "binary").tolist() == [[[[1, 0, 1]]]]  # sigmoid(1e-9) rounds to 0.5; logit > 0
    assert predicted_labels(logits, "binary", threshold=0.9).tolist() == [[[[0, 0, 0]]]]
    with pytest.raises(ValueError, match="threshold"):
        predicted_labels(logits, "binary", threshold=1.0)
    logits, _ = random_case("multiclass", k=3)
    labels = predicted_labels(logits, "multiclass")
    assert labels.shape == (4, 1, 6, 6) and labels.dtype == torch.int64 and torch.equal(labels[:, 0], logits.argmax(1))
    torch.testing.assert_close(probabilities(logits, "multiclass").sum(1), torch.ones(4, 6, 6))
    labels = predicted_labels(logits, "multilabel")
    assert labels.shape == (4, 3, 6, 6) and torch.equal(labels, (logits > 0).long())
    torch.testing.assert_close(probabilities(logits, "multilabel"), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="task 'binary' needs logits with 1 channel"):
        predicted_labels(logits, "binary")
