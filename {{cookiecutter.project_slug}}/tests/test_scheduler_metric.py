"""A scheduler stepped with a value (ReduceLROnPlateau) reads CHECKPOINT_METRIC in CHECKPOINT_MODE's direction."""

import csv
import importlib
import logging
from functools import partial

import pytest
import torch

from config.checks import reads_metric
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.schema import validate_config
from config.serialize import ConfigError
from config.train_config import TRAIN_CONFIG
from training.build import build_scheduler, step_epoch_scheduler

PLATEAU = torch.optim.lr_scheduler.ReduceLROnPlateau

# The project's first routine (any one does: the behaviour tested is the Run's, shared by all three).
TRAIN = importlib.import_module(f"training.{ROUTINES[0]}_training").train


class StepWithValue:
    """A scheduler of a user's, stepped with a value as ReduceLROnPlateau is (it keeps the values, not the lr)."""

    def __init__(self, optim: torch.optim.Optimizer, mode: str = "min") -> None:
        self.optimizer, self.mode, self.values = optim, mode, []

    def step(self, value: float) -> None:
        """Keep ``value``: what the run stepped it with."""
        self.values.append(value)


def optimizer() -> torch.optim.Optimizer:
    """An optimizer of one parameter at lr 1."""
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)


def test_a_rising_val_dice_keeps_the_lr_of_reduce_on_plateau(tiny_config: dict, global_config: GlobalConfig) -> None:
    # patience 0: the lr is cut after any epoch that does not improve val_dice; torch's default mode 'min' took a
    # rising val_dice for epochs that got worse and cut it after each one (0.01 -> 0.001 -> 0.0001).
    tiny_config.update(SCHEDULER=PLATEAU, SCHEDULER_CONFIG={"patience": 0}, EPOCHS=3)
    tiny_config["OPTIMIZER_CONFIG"]["lr"] = 0.01
    result = TRAIN(tiny_config, global_config)
    with (result.run_dir / "history.csv").open(newline="", encoding="utf-8") as file:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]
    dice = [row["val_dice"] for row in rows]
    # the epochs whose step sets a recorded lr, and that beat the best before them by ReduceLROnPlateau's threshold
    improved = [epoch for epoch in range(len(rows) - 1) if dice[epoch] > max(dice[:epoch], default=0) * (1 + 1e-4)]
    assert 1 in improved, dice  # the second epoch beat the first: mode 'min' cut the lr after it
    for epoch in improved:
        assert rows[epoch + 1]["lr"] == rows[epoch]["lr"] == 0.01, rows


@pytest.mark.parametrize(("metric", "direction"), [("val_dice", "max"), ("val_dice_shape", "max"), ("val_loss", "min")])
def test_a_metric_scheduler_gets_the_direction_of_the_checkpoint_metric(metric: str, direction: str) -> None:
    config = {**TRAIN_CONFIG, "SCHEDULER": PLATEAU, "CHECKPOINT_METRIC": metric, "CHECKPOINT_MODE": None}
    if metric == "val_dice_shape":
        config.update(TASK="multilabel", CLASSES=["shape", "edge"], CHECKPOINT_METRIC="val_dice_shape")
    assert build_scheduler(validate_config(config), optimizer(), 3).mode == direction
    # any scheduler whose step takes a value, not only torch's
    assert build_scheduler(validate_config({**config, "SCHEDULER": StepWithValue}), optimizer(), 3).mode == direction


@pytest.mark.parametrize(
    "change",
    [
        {"SCHEDULER_CONFIG": {"mode": "min"}},
        {"SCHEDULER": partial(PLATEAU, mode="min")},
        {"SCHEDULER": StepWithValue, "SCHEDULER_CONFIG": {"mode": "min"}},
        {"SCHEDULER_CONFIG": {"mode": "max"}, "CHECKPOINT_METRIC": "val_loss", "CHECKPOINT_MODE": None},
    ],
)
def test_a_mode_against_the_checkpoint_metric_is_refused(change: dict) -> None:
    config = {**TRAIN_CONFIG, "SCHEDULER": PLATEAU, **change}
    with pytest.raises(ConfigError, match=r"^SCHEDULER_CONFIG: mode '(min|max)' contradicts CHECKPOINT_METRIC 'val_"):
        validate_config(config)


def test_a_mode_that_agrees_is_taken() -> None:
    config = validate_config({**TRAIN_CONFIG, "SCHEDULER": PLATEAU, "SCHEDULER_CONFIG": {"mode": "max"}})
    assert build_scheduler(config, optimizer(), 3).mode == "max"


def test_a_scheduler_function_that_builds_the_wrong_mode_is_refused() -> None:
    def plateau(optim: torch.optim.Optimizer) -> PLATEAU:
        return PLATEAU(optim, mode="min")

    config = validate_config({**TRAIN_CONFIG, "SCHEDULER": plateau})
    with pytest.raises(ConfigError, match=r"mode 'min', but it reads CHECKPOINT_METRIC 'val_dice' in mode 'max'"):
        build_scheduler(config, optimizer(), 3)


def test_only_a_step_that_takes_a_value_reads_a_metric() -> None:
    assert reads_metric(PLATEAU) and reads_metric(partial(PLATEAU, factor=0.5)) and reads_metric(StepWithValue)
    assert reads_metric(PLATEAU(optimizer()))
    assert not reads_metric(torch.optim.lr_scheduler.CosineAnnealingLR) and not reads_metric(len)
    assert not reads_metric(torch.optim.lr_scheduler.StepLR(optimizer(), 2))


def test_an_undefined_metric_is_no_step(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = PLATEAU(optimizer(), mode="max", patience=0)
    step_epoch_scheduler(scheduler, {"val_dice": 0.5}, "val_dice")
    with caplog.at_level(logging.INFO, logger="project"):
        step_epoch_scheduler(scheduler, {"val_dice": float("nan")}, "val_dice")
    assert scheduler.num_bad_epochs == 0 and scheduler.best == 0.5 and scheduler.get_last_lr() == [1.0]
    assert [record.getMessage() for record in caplog.records] == [
        "val_dice is nan this epoch: ReduceLROnPlateau not stepped"
    ]
    custom = StepWithValue(optimizer())
    step_epoch_scheduler(custom, {"val_loss": 0.25, "val_dice": float("inf")}, "val_loss")
    step_epoch_scheduler(custom, {"val_loss": float("inf")}, "val_loss")
    assert custom.values == [0.25]


def test_a_scheduler_that_reads_no_metric_steps_every_epoch() -> None:
    scheduler = torch.optim.lr_scheduler.StepLR(optim := optimizer(), step_size=1, gamma=0.5)
    optim.step()  # an epoch's training first, as in a run
    step_epoch_scheduler(scheduler, {"val_dice": float("nan")}, "val_dice")  # it reads no metric: a NaN is no matter
    step_epoch_scheduler(None, {}, "val_dice")
    assert scheduler.get_last_lr() == [0.5]
