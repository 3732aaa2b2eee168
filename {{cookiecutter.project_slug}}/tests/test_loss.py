"""Losses of the three tasks: hand-computed cases, MONAI as the reference, ignored pixels, class weights, the refusals
of a wrong task, and the per-sample mean the training loops rely on."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.losses import IGNORE, cross_entropy, dice_bce, dice_ce, dice_loss, smooth_dice_loss

LOSSES = {"dice_loss": dice_loss, "cross_entropy": cross_entropy, "dice_ce": dice_ce}
TASKS = ("binary", "multiclass", "multilabel")
BIG = 20.0  # a logit whose sigmoid is 1 - 2e-9: "certain" without being infinite


def logits_from(mask: torch.Tensor) -> torch.Tensor:
    """Confident binary logits predicting exactly ``mask``."""
    return (mask * 2 - 1) * BIG


def random_case(task: str, n: int = 3, k: int = 4, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits [n, K, size, size] and a target of ``task`` without ignored pixels (binary: K = 1)."""
    generator = torch.Generator().manual_seed(seed)
    k = 1 if task == "binary" else k
    logits = torch.randn(n, k, size, size, generator=generator) * 2
    if task == "multiclass":
        return logits, torch.randint(0, k, (n, 1, size, size), generator=generator)
    return logits, (torch.rand(n, k, size, size, generator=generator) > 0.6).float()


def ignore_right_half(target: torch.Tensor) -> torch.Tensor:
    """``target`` with its right half ignored (as padding would be)."""
    target = target.clone()
    target[..., target.shape[-1] // 2 :] = IGNORE
    return target


def test_binary_hand_computed_values():
    """Soft dice and BCE of probability 1/2 everywhere, perfect and inverted predictions, by hand."""
    # Logits 0 -> probability 1/2; the target has 2 of 4 pixels. Intersection 1, |P| 2, |T| 2.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert dice_loss(logits, target, smooth=0.0).item() == pytest.approx(1 - 2 * 1 / 4)
    assert dice_loss(logits, target, smooth=1.0).item() == pytest.approx(1 - 3 / 5)
    assert cross_entropy(logits, target).item() == pytest.approx(math.log(2))
    assert dice_ce(logits, target).item() == pytest.approx(1 - 3 / 5 + math.log(2))
    # A confidently inverted 4x4 half: soft dice (0 + 1) / (16 + 1), BCE about the logit itself.
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    assert dice_loss(logits_from(1 - target), target).item() == pytest.approx(1 - 1 / 17, abs=1e-6)
    assert dice_ce(logits_from(1 - target), target).item() == pytest.approx(1 - 1 / 17 + BIG, rel=1e-4)
    for task in TASKS:  # a perfect, confident prediction loses ~0 in every task
        target = random_case(task)[1]
        truth = F.one_hot(target[:, 0], 4).permute(0, 3, 1, 2).float() if task == "multiclass" else target
        assert dice_ce(logits_from(truth), target, task).item() == pytest.approx(0.0, abs=1e-6), task


def test_old_names_are_the_new_functions():
    """Configs and saved runs naming dice_bce or smooth_dice_loss keep working, with the binary default."""
    assert dice_bce is dice_ce and smooth_dice_loss is dice_loss
    logits, target = random_case("binary")
    assert dice_bce(logits, target).item() == pytest.approx(dice_loss(logits, target) + cross_entropy(logits, target))


@pytest.mark.parametrize("task", TASKS)
def test_dice_loss_equals_monai(task):
    """Soft dice equals MONAI's DiceLoss (same smoothing, mean over samples and classes) without ignored pixels."""
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_case(task)
    options = {"softmax": True, "to_onehot_y": True} if task == "multiclass" else {"sigmoid": True}
    reference = monai_losses.DiceLoss(smooth_nr=1.0, smooth_dr=1.0, reduction="mean", **options)
    assert dice_loss(logits, target, task).item() == pytest.approx(reference(logits, target).item(), abs=1e-6)
    # One class weighted alone gives that class's own loss.
    if task != "binary":
        per_class = monai_losses.DiceLoss(smooth_nr=1.0, smooth_dr=1.0, reduction="none", **options)(logits, target)
        alone = dice_loss(logits, target, task, class_weights=[0.0, 1.0, 0.0, 0.0])
        assert alone.item() == pytest.approx(per_class[:, 1].mean().item(), abs=1e-6)


def test_dice_ce_equals_monai_dice_ce_for_multiclass():
    """Multiclass dice + CE equals MONAI's DiceCELoss (equal-sized samples: the pooled CE is the per-sample mean)."""
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_case("multiclass", seed=3)
    reference = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, smooth_nr=1.0, smooth_dr=1.0)
    assert dice_ce(logits, target, "multiclass").item() == pytest.approx(reference(logits, target).item(), abs=1e-5)


def test_cross_entropy_equals_pytorch():
    """Without ignored pixels: F.cross_entropy (weighted) per sample, and BCE with logits."""
    logits, target = random_case("multiclass", n=1)
    weights = [0.5, 2.0, 1.0, 3.0]
    expected = F.cross_entropy(logits, target[:, 0], weight=torch.tensor(weights))
    assert cross_entropy(logits, target, "multiclass", weights).item() == pytest.approx(expected.item(), rel=1e-6)
    logits, target = random_case("multilabel")
    expected = F.binary_cross_entropy_with_logits(logits, target)
    assert cross_entropy(logits, target, "multilabel").item() == pytest.approx(expected.item(), rel=1e-6)


def test_binary_weight_is_a_two_class_multiclass():
    """Binary with [w] equals a two-class softmax with weights [1, w] (the logit is the difference of the two)."""
    logits, target = random_case("binary")
    two_class = torch.cat([torch.zeros_like(logits), logits], dim=1)
    binary = cross_entropy(logits, target, "binary", [3.0])
    assert binary.item() == pytest.approx(cross_entropy(two_class, target.long(), "multiclass", [1.0, 3.0]).item())


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", LOSSES)
def test_class_weights_change_the_loss(task, name):
    """Class weights change the value; equal weights change nothing where they are relative weights of classes."""
    loss_fn = LOSSES[name]
    logits, target = random_case(task, seed=5)
    k = logits.shape[1]
    plain = loss_fn(logits, target, task).item()
    weighted = loss_fn(logits, target, task, [5.0] + [1.0] * (k - 1)).item()
    if name == "dice_loss" and task == "binary":
        assert weighted == pytest.approx(plain)  # a weighted average over one class is that class
    else:
        assert weighted != pytest.approx(plain, rel=1e-3)
    uniform = loss_fn(logits, target, task, [2.0] * k).item()
    if name != "dice_loss" and task != "multiclass":
        assert uniform != pytest.approx(plain, rel=1e-3)  # BCE: a label's positives weigh 2 against its negatives
    else:
        assert uniform == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_count_nowhere(task, name):
    """Ignored pixels: their logits (even NaN) change nothing, get zero gradient, and the loss is that of the rest."""
    loss_fn = LOSSES[name]
    logits, target = random_case(task, seed=7)
    target = ignore_right_half(target)
    logits = logits.requires_grad_()
    loss = loss_fn(logits, target, task, None)
    loss.backward()
    assert torch.isfinite(loss) and (logits.grad[..., 4:] == 0).all() and logits.grad[..., :4].abs().sum() > 0
    changed = logits.detach().clone()
    changed[..., 4:] = torch.randn_like(changed[..., 4:]) * 50
    changed[0, :, 0, 7] = float("nan")  # no-data logits of an ignored pixel
    assert loss_fn(changed, target, task).item() == pytest.approx(loss.item(), abs=1e-6)
    # The left half alone (as if the padding were cut away) gives the same loss.
    cropped = loss_fn(logits.detach()[..., :4], target[..., :4], task)
    assert cropped.item() == pytest.approx(loss.item(), abs=1e-6)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", LOSSES)
def test_sample_ignored_everywhere_loses_nothing(task, name):
    """A sample whose pixels are all ignored has loss 0 and a zero (not NaN) gradient, also with smooth=0."""
    loss_fn = LOSSES[name]
    logits, target = random_case(task, n=2)
    target[1] = IGNORE
    logits = logits.requires_grad_()
    loss = loss_fn(logits, target, task)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[1] == 0).all()
    assert loss_fn(logits[1:], target[1:], task).item() == 0.0
    assert loss.item() == pytest.approx(loss_fn(logits[:1], target[:1], task).item() / 2, rel=1e-6)
    assert dice_loss(logits[1:], target[1:], task, smooth=0.0).item() == 0.0


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", LOSSES)
def test_batch_value_is_mean_of_per_sample_values(task, name):
    """A batch of two gives the mean of the two singletons (the loops rely on it), also with padding in one."""
    loss_fn = LOSSES[name]
    logits, target = random_case(task, n=2, seed=11)
    target[1:] = ignore_right_half(target[1:])
    weights = [1.0] + [2.0] * (logits.shape[1] - 1)
    batch = loss_fn(logits, target, task, weights).item()
    singles = [loss_fn(logits[i : i + 1], target[i : i + 1], task, weights) for i in (0, 1)]
    assert batch == pytest.approx(sum(s.item() for s in singles) / 2, rel=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_half_precision_logits_give_float32_losses(task):
    """bfloat16 logits (mixed precision) are summed in float32, with finite non-zero gradients."""
    logits, target = random_case(task)
    logits = logits.to(torch.bfloat16).requires_grad_()
    for name, loss_fn in LOSSES.items():
        logits.grad = None
        loss = loss_fn(logits, target, task)
        assert loss.dtype == torch.float32, name
        loss.backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("task", "logits_shape", "target", "message"),
    [
        ("binary", (2, 3, 8, 8), torch.zeros(2, 1, 8, 8), r"task 'binary' needs logits with 1 channel.*\(2, 3, 8, 8\)"),
        ("binary", (2, 1, 8, 8), torch.zeros(2, 1, 8, 9), r"task 'binary' needs a target of shape.*\(2, 1, 8, 9\)"),
        ("multiclass", (2, 1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long), "2 channels or more"),
        ("multiclass", (2, 3, 8, 8), torch.zeros(2, 1, 8, 8), r"integer target.*torch.float32.*\(2, 3, 8, 8\)"),
        ("multiclass", (2, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.long), r"'multiclass' needs a target.*\(2, 1"),
        ("multilabel", (2, 3, 8, 8), torch.zeros(2, 2, 8, 8), r"'multilabel' needs a target of shape \(2, 3, 8, 8\)"),
        ("multilabel", (2, 3, 8), torch.zeros(2, 3, 8), r"\[N, K, H, W\]"),
        ("segmentation", (2, 1, 8, 8), torch.zeros(2, 1, 8, 8), "not one of binary, multiclass, multilabel"),
    ],
)
@pytest.mark.parametrize("name", LOSSES)
def test_wrong_task_for_the_shapes_is_refused(name, task, logits_shape, target, message):
    """Shapes or dtypes that do not fit the task are refused, naming the task and the shapes."""
    with pytest.raises(ValueError, match=message):
        LOSSES[name](torch.zeros(logits_shape), target, task)


def test_wrong_class_weights_are_refused():
    """One weight per class, none negative."""
    logits, target = random_case("multiclass")
    with pytest.raises(ValueError, match="class_weights has 3 values for 4 classes"):
        dice_ce(logits, target, "multiclass", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="must be >= 0"):
        dice_ce(logits, target, "multiclass", [1.0, -1.0, 1.0, 1.0])
