"""Metrics of the three tasks: hand-computed cases, MONAI as the reference, per-class scalars and their cache, the
confusion matrix and hard predictions (the label maps TensorBoard shows: tests/test_tensorboard.py)."""

import functools
import pickle

import pytest
import torch
import torch.nn.functional as F

from utils.losses import IGNORE
from utils.metrics import (
    confusion_matrix,
    dice,
    f1,
    iou,
    per_class_metrics,
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
def test_empty_masks_follow_the_eps_convention(task):
    """Nothing to find and nothing found scores 1.0; finding nothing of something (or the reverse) scores 0."""
    empty = torch.zeros(2, 3, 4, 4) if task == "multilabel" else torch.zeros(2, 1, 4, 4)
    target = empty.long() if task == "multiclass" else empty
    k = 3 if task != "binary" else 1
    none_predicted = torch.full((2, k, 4, 4), -BIG)
    if task == "multiclass":
        none_predicted[:, 0] = BIG  # all background: every other class empty in both
    for name, metric in METRICS.items():
        assert torch.equal(metric(none_predicted, target, task), torch.ones(2, k)), name
    if task != "multiclass":
        assert (dice(-none_predicted, target, task) < 1e-6).all()
        assert (dice(none_predicted, 1 - target, task) < 1e-6).all()


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_dice_and_iou_equal_monai(task):
    """Per-sample, per-class dice and IoU equal MONAI's compute_dice / compute_iou on one-hot inputs (to 1e-6)."""
    monai_metrics = pytest.importorskip("monai.metrics")
    for seed in range(3):
        logits, target = random_case(task, seed=seed)
        if task == "multiclass":
            pred = F.one_hot(logits.argmax(1), 5).permute(0, 3, 1, 2)
            truth = F.one_hot(target[:, 0], 5).permute(0, 3, 1, 2)
        else:
            pred, truth = (logits > 0).long(), target.long()
        options = {"include_background": True, "ignore_empty": False}
        torch.testing.assert_close(dice(logits, target, task), monai_metrics.compute_dice(pred, truth, **options),
                                   atol=1e-6, rtol=0)  # fmt: skip
        torch.testing.assert_close(iou(logits, target, task), monai_metrics.compute_iou(pred, truth, **options),
                                   atol=1e-6, rtol=0)  # fmt: skip


def test_binary_metric_refuses_multichannel_logits():
    """The old bug: a binary dice given a 3-class model's logits scored channel 0 (0.902 against a boundary 0.41)."""
    logits, target = random_case("multiclass", k=3)
    for name, metric in METRICS.items():
        with pytest.raises(ValueError, match=r"task 'binary' needs logits with 1 channel.*\(4, 3, 6, 6\).*multiclass"):
            metric(logits, target.float())
        with pytest.raises(ValueError, match="task 'binary'"):
            per_class_metrics({name: metric}, ["foreground"], "binary")[name](logits, target.float())


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
        torch.testing.assert_close(metric(logits, padded, task), expected, msg=name)
        torch.testing.assert_close(metric(changed, padded, task), expected, msg=name)
        torch.testing.assert_close(metric(logits[1:2], padded[1:2], task), expected[1:2], msg=name)


def test_per_class_metrics_names_and_means():
    """multiclass: the mean over classes first, then one column per class; binary: the name alone."""
    classes = ["background", "interior", "boundary"]
    logits, target = random_case("multiclass", k=3, seed=2)
    functions = per_class_metrics({"dice": dice, "iou": iou}, classes, "multiclass")
    assert list(functions) == ["dice", "dice_background", "dice_interior", "dice_boundary", "iou", "iou_background",
                               "iou_interior", "iou_boundary"]  # fmt: skip
    values = {"dice": dice(logits, target, "multiclass"), "iou": iou(logits, target, "multiclass")}
    for name in ("dice", "iou"):
        scalar = functions[name](logits, target)
        assert scalar.dim() == 0 and scalar.item() == pytest.approx(values[name].mean(0).mean().item())
        for index, class_name in enumerate(classes):
            column = f"{name}_{class_name}"
            assert functions[column].__name__ == column  # fastai names its columns so
            assert functions[column](logits, target).item() == pytest.approx(values[name][:, index].mean().item())
    logits, target = random_case("binary")
    functions = per_class_metrics({"dice": dice}, ["foreground"], "binary")
    assert list(functions) == ["dice"]
    assert functions["dice"](logits, target).item() == pytest.approx(dice(logits, target).mean().item())
    bound = per_class_metrics({"dice": functools.partial(dice, task="binary")}, ["foreground"], "binary")["dice"]
    assert bound(logits, target).item() == functions["dice"](logits, target).item()
    old_style = per_class_metrics({"mean": lambda logits, target: logits.mean()}, ["foreground"], "binary")["mean"]
    assert old_style(logits, target).item() == pytest.approx(logits.mean().item())
    with pytest.raises(ValueError, match=r"values of shape \(\).*need \[N, K\]"):
        per_class_metrics({"mean": lambda logits, target: logits.mean()}, classes, "multiclass")["mean"](logits, target)
    with pytest.raises(ValueError, match="3 CLASSES but logits"):
        per_class_metrics({"dice": dice}, classes, "multilabel")["dice_interior"](*random_case("multilabel", k=4))
    for task, names in (("binary", ["a", "b"]), ("multiclass", ["a"]), ("semantic", ["a", "b"])):
        with pytest.raises(ValueError, match=task):
            per_class_metrics({"dice": dice}, names, task)


def test_per_class_metrics_compute_once_per_batch():
    """All columns of one metric share one computation per (logits, target) pair; a new pair or an in-place change
    recomputes; the functions survive pickling (spawned workers, saved learners)."""
    calls = []

    def counted(logits, target, task):
        calls.append(task)
        return dice(logits, target, task)

    logits, target = random_case("multilabel", k=3)
    functions = per_class_metrics({"dice": counted}, ["a", "b", "c"], "multilabel")
    first = [f(logits, target).item() for f in functions.values()]
    assert calls == ["multilabel"]
    copy = logits.clone()
    assert [f(copy, target).item() for f in functions.values()] == first and len(calls) == 2
    copy.neg_()
    assert functions["dice_a"](copy, target).item() != first[1] and len(calls) == 3
    functions = per_class_metrics({"dice": dice}, ["a", "b", "c"], "multilabel")
    expected = functions["dice_b"](logits, target).item()
    restored = pickle.loads(pickle.dumps(functions["dice_b"]))
    assert restored.__name__ == "dice_b" and restored(logits, target).item() == pytest.approx(expected)


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
