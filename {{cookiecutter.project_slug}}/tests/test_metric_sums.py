"""The logged means: exact NaN-and-count means over batches and ranks, pooled values beside them, and the issue's
worked examples (10 tiles, 9 without objects; a class absent from most tiles), which the old rule got wrong."""

import math

import pytest
import torch

from utils.metric_sums import MetricSums, improves, metric_columns
from utils.metrics import dice, iou, precision

BIG = 20.0


def tile(truth: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary logits and target ``[1, 1, H, W]`` of a predicted and a true mask ``[H, W]``."""
    return (pred.float() * 2 - 1)[None, None] * BIG, truth.float()[None, None]


def empty_tiles_example(false_positive: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Ten 16x16 tiles, one object: its 8x8 square found with 18 pixels right and 16 wrong (dice 36/98 = 0.367);
    the nine empty tiles predicted empty, but for ``false_positive`` one pixel predicted on the first of them."""
    truth, pred = torch.zeros(16, 16, dtype=torch.bool), torch.zeros(16, 16, dtype=torch.bool)
    truth[:8, :8] = True
    pred[:2, :8], pred[2, :2] = True, True  # 18 pixels of the square
    pred[12:14, :8] = True  # 16 pixels outside it
    assert (pred & truth).sum() == 18 and (pred & ~truth).sum() == 16
    tiles = [tile(truth, pred)]
    for index in range(9):
        wrong = torch.zeros(16, 16, dtype=torch.bool)
        wrong[0, 0] = false_positive and index == 0
        tiles.append(tile(torch.zeros(16, 16, dtype=torch.bool), wrong))
    return tiles


def summed(tiles: list[tuple[torch.Tensor, torch.Tensor]], batch: int, **kwargs) -> MetricSums:
    """MetricSums of dice and iou over ``tiles`` in batches of ``batch``."""
    sums = MetricSums({"dice": dice, "iou": iou}, **kwargs)
    for start in range(0, len(tiles), batch):
        part = tiles[start : start + batch]
        sums.update(torch.cat([logits for logits, _ in part]), torch.cat([target for _, target in part]))
    return sums


def test_nine_empty_tiles_no_longer_inflate_the_mean() -> None:
    """The issue's example. The mean is the object tile's dice (the old rule read 0.937: nine perfect empty tiles);
    with one false pixel on an empty tile, that tile scores 0 and counts (the old rule: 0.837, the issue's figure)."""
    object_dice = 36 / 98
    values = summed(empty_tiles_example(False), batch=4, classes=["shape"], task="binary").compute()
    assert values["dice"] == pytest.approx(object_dice, abs=1e-6)  # was (9 + 0.367) / 10 = 0.937
    assert values["dice_pooled"] == pytest.approx(object_dice, abs=1e-6)
    values = summed(empty_tiles_example(True), batch=3, classes=["shape"], task="binary").compute()
    assert values["dice"] == pytest.approx(object_dice / 2, abs=1e-6)  # was (8 + 0 + 0.367) / 10 = 0.837
    assert values["dice_pooled"] == pytest.approx(36 / 99, abs=1e-9)  # all pixels together: one more FP
    assert list(values) == ["dice", "dice_pooled", "iou", "iou_pooled"]


def test_a_class_absent_from_most_tiles_is_scored_where_it_occurs() -> None:
    """multiclass: class b occurs in 4 of 10 tiles and is never predicted. Its column is 0 (it read 0.6000 = the
    share of tiles without b); class c never occurs nor is predicted: NaN, left out of the mean over classes."""
    target = torch.zeros(10, 1, 8, 8, dtype=torch.long)
    target[:4, :, :2] = 1  # class b in tiles 0..3
    logits = torch.full((10, 3, 8, 8), -BIG)
    logits[:, 0] = BIG  # everything predicted background
    sums = MetricSums({"dice": dice}, ["a", "b", "c"], "multiclass", prefix="val_")
    sums.update(logits[:7], target[:7])
    sums.update(logits[7:], target[7:])
    values = sums.compute()
    assert list(values) == ["val_dice", "val_dice_pooled", "val_dice_a", "val_dice_b", "val_dice_c"]
    assert values["val_dice_b"] == 0.0 and math.isnan(values["val_dice_c"])
    dice_a = (1.0 * 6 + (2 * 48 / (2 * 48 + 16)) * 4) / 10  # tiles with b: 48 of 64 pixels background, all found
    assert values["val_dice_a"] == pytest.approx(dice_a, abs=1e-6)
    assert values["val_dice"] == pytest.approx((dice_a + 0.0) / 2, abs=1e-6)
    assert values["val_dice_pooled"] == pytest.approx((2 * 576 / (2 * 576 + 64) + 0.0) / 2, abs=1e-9)
    per_class = sums.class_values()
    assert per_class["dice_count"].tolist() == [10, 4, 0]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_means_over_batches_and_ranks_equal_one_pass_and_the_monai_oracle(task: str) -> None:
    """Batches of 5, 2, 6 and 3 samples, or two ranks' sums added up (what all_reduce does), give the one-pass means
    of the defined values, which are MONAI's per-image dice with the both-empty pairs masked out."""
    monai_metrics = pytest.importorskip("monai.metrics")
    generator = torch.Generator().manual_seed(3)
    k, classes = (1, ["x"]) if task == "binary" else (4, ["a", "b", "c", "d"])
    logits = torch.randn(16, k, 6, 6, generator=generator) * 3
    if task == "multiclass":
        target = torch.randint(0, 3, (16, 1, 6, 6), generator=generator)  # class d never occurs
        pred = torch.nn.functional.one_hot(logits.argmax(1), k).permute(0, 3, 1, 2)
        truth = torch.nn.functional.one_hot(target[:, 0], k).permute(0, 3, 1, 2)
    else:
        target = (torch.rand(16, k, 6, 6, generator=generator) > 0.9).float()
        target[:5] = 0  # empty truths, some predicted empty too
        logits[:3] = -BIG
        pred, truth = (logits > 0).long(), target.long()
    oracle = monai_metrics.compute_dice(pred, truth, include_background=True, ignore_empty=False)
    oracle[(pred.sum((2, 3)) == 0) & (truth.sum((2, 3)) == 0)] = math.nan
    class_means = oracle.nanmean(0)
    one_pass = MetricSums({"dice": dice}, classes, task)
    one_pass.update(logits, target)
    expected = one_pass.compute()
    assert expected["dice"] == pytest.approx(float(class_means[~class_means.isnan()].mean()), abs=1e-6)
    batches = MetricSums({"dice": dice}, classes, task)
    ranks = [MetricSums({"dice": dice}, classes, task) for _ in range(2)]
    for index, (start, end) in enumerate([(0, 5), (5, 7), (7, 13), (13, 16)]):
        batches.update(logits[start:end], target[start:end])
        ranks[index % 2].update(logits[start:end], target[start:end])
    added = [a + b for a, b in zip(ranks[0].totals(), ranks[1].totals(), strict=True)]
    for result in (batches.compute(), ranks[0].compute(added)):
        assert result.keys() == expected.keys()
        for column, value in expected.items():
            assert result[column] == pytest.approx(value, abs=1e-12, nan_ok=True), column


def test_users_metrics_keep_working() -> None:
    """A metric giving [N, K] with NaN is averaged over its defined values; a metric of old giving a scalar (binary)
    counts once per sample; neither has a pooled column; a wrong shape is one error naming the metric."""

    def own(logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:  # pylint: disable=unused-argument
        return torch.tensor([[0.2], [math.nan], [0.4]])[: len(logits)]

    def old(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pylint: disable=unused-argument
        return target.mean()

    target = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1, 1)
    sums = MetricSums({"own": own, "old": old, "precision": precision}, ["x"], "binary")
    sums.update(torch.full((3, 1, 1, 1), BIG), target)
    sums.update(torch.full((1, 1, 1, 1), -BIG), torch.ones(1, 1, 1, 1))
    values = sums.compute()
    assert list(values) == ["own", "old", "precision", "precision_pooled"]
    assert values["own"] == pytest.approx(0.8 / 3)  # (0.2 + 0.4 + 0.2) / 3: the NaN skipped
    assert values["old"] == pytest.approx(0.75)  # (2/3 * 3 + 1 * 1) / 4 samples
    assert values["precision"] == pytest.approx(2 / 3) and values["precision_pooled"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"own: the metric gave values of shape \(2, 1\) for logits \(3, 1, 1, 1\)"):
        MetricSums({"own": lambda logits, target: torch.zeros(2, 1)}, ["x"], "binary").update(
            torch.zeros(3, 1, 1, 1), target
        )
    with pytest.raises(ValueError, match="the column"):
        metric_columns({"dice": dice}, ["background", "pooled"], "multiclass")


def test_an_undefined_value_is_never_an_improvement() -> None:
    assert improves(0.5, None, "max") and not improves(math.nan, None, "max")
    assert not improves(math.nan, 0.1, "max") and not improves(math.nan, 0.9, "min")
    assert improves(0.6, 0.5, "max") and not improves(0.6, 0.5, "max", min_delta=0.2) and improves(0.4, 0.5, "min")
