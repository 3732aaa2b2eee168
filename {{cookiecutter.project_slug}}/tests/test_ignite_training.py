"""The PyTorch-Ignite routine end to end: the same outputs and numbers as the raw routine, resume, errors, LR_FIND."""

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ScriptedLoss
from torch.utils.data import DataLoader, TensorDataset

import predict
from config.paths import GlobalConfig
from training import ignite_training
from training.build import LOGGER
from training.checkpoint import CheckpointError
from training.run import Run
from utils.losses import dice_bce
from utils.metrics import dice


def test_a_run_leaves_the_files_columns_and_numbers_of_the_raw_routine(
    shared_run: Callable, files_of: Callable
) -> None:
    pytest.importorskip("training.pytorch_training", reason="the project has no raw routine")
    (ignite, ignite_config), (raw, raw_config) = shared_run("ignite"), shared_run("pytorch")
    assert ignite.status == raw.status == "completed" and ignite.epochs_completed == 2

    # the same files, columns and checkpoint keys
    assert files_of(ignite) == files_of(raw)
    ignite_history = pd.read_csv(ignite.run_dir / "history.csv")
    raw_history = pd.read_csv(raw.run_dir / "history.csv")
    assert list(ignite_history.columns) == list(raw_history.columns)
    assert ignite_history["epoch"].tolist() == [1, 2]
    ignite_row = pd.read_csv(ignite_config.LOG_DIR / "experiments.csv").iloc[0]
    raw_row = pd.read_csv(raw_config.LOG_DIR / "experiments.csv").iloc[0]
    assert ignite_row.dropna().index.tolist() == raw_row.dropna().index.tolist()
    assert ignite_row["run_name"] == ignite.run_name and ignite_row["routine"] == "ignite"
    ignite_last = torch.load(ignite.weight_dir / "last.pt", weights_only=True)
    raw_last = torch.load(raw.weight_dir / "last.pt", weights_only=True)
    assert set(ignite_last) == set(raw_last) and ignite_last["routine"] == "ignite" and ignite_last["epoch"] == 2
    model, ch_in = predict.load_model(ignite.weight_dir / "best.pt", torch.device("cpu"))
    assert model(torch.zeros(1, ch_in, 32, 32)).shape == (1, 1, 32, 32)

    # the same numbers: same batches in the same order, same steps (32 training samples in 4 full batches: the case
    # where taking epoch 2's batches from epoch 1's iterator would shift the seeded order)
    np.testing.assert_allclose(ignite_history["train_loss"], raw_history["train_loss"], rtol=0, atol=1e-4)
    for column in ("val_dice", "val_dice_pooled"):  # exact means: tests/test_metric_runs.py
        np.testing.assert_allclose(ignite_history[column], raw_history[column], rtol=0, atol=0.03)
    np.testing.assert_allclose(ignite_history["lr"], raw_history["lr"], rtol=1e-12)


def foreground_share(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """A loss whose mean over samples is known."""
    return (logits * 0).mean() + masks.mean()


def broken_metric(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A metric that passes the sanity check (a training batch: the model in eval mode, before any step) and fails
    in the evaluator."""
    if not BROKEN_METRIC_CALLS:
        BROKEN_METRIC_CALLS.append(1)
        return (logits * 0).mean() + target.float().mean()
    raise BoomError("metric")


BROKEN_METRIC_CALLS: list[int] = []


def test_trainer_averages_the_epoch_loss_over_samples_with_a_short_last_batch(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    torch.manual_seed(0)
    images, masks = torch.randn(10, 1, 32, 32), (torch.rand(10, 1, 32, 32) > 0.5).float()
    run = Run({**tiny_config, "LOSS": foreground_share}, global_config, "ignite")
    # batches of 4, 4 and 2
    run.train_loader = DataLoader(TensorDataset(images, masks), batch_size=4, shuffle=True, generator=torch.Generator())
    state = ignite_training.create_trainer(run).run(run.train_loader)
    assert state.loss_sum / state.samples == pytest.approx(masks.mean().item(), abs=1e-6)
    run.finish()


def test_evaluator_averages_over_samples_with_a_short_last_batch(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    torch.manual_seed(0)
    images, masks = torch.randn(10, 1, 32, 32), (torch.rand(10, 1, 32, 32) > 0.5).float()
    run = Run(tiny_config, global_config, "ignite")
    loader = DataLoader(TensorDataset(images, masks), batch_size=4)  # batches of 4, 4 and 2
    val = ignite_training.create_evaluator(run).run(loader).metrics
    with torch.no_grad():
        logits = run.raw_model.eval()(images)
    assert val["val_loss"] == pytest.approx(dice_bce(logits, masks).item(), abs=1e-6)
    assert val["val_dice"] == pytest.approx(dice(logits, masks).mean().item(), abs=1e-6)
    run.finish()  # closes the run's log file


@pytest.mark.slow
def test_resume_continues_the_same_run_with_this_routine_only(tiny_config: dict, global_config: GlobalConfig) -> None:
    straight = ignite_training.train(tiny_config, global_config)
    tiny_config["SCHEDULER_CONFIG"] = {"T_max": 2}  # the 2-epoch schedule from the start: it is resumed to 2 epochs
    first = ignite_training.train({**tiny_config, "EPOCHS": 1}, global_config)
    resumed = ignite_training.train(tiny_config, global_config, resume=first.run_name)
    assert resumed.run_name == first.run_name and resumed.status == "completed" and resumed.epochs_completed == 2
    history = pd.read_csv(resumed.run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv").set_index("run_name")
    assert len(experiments) == 2 and experiments.loc[first.run_name, "epochs_completed"] == 2
    # Epoch 2 saw the batches of an uninterrupted run's epoch 2 and ended with the same weights.
    straight_history = pd.read_csv(straight.run_dir / "history.csv")
    np.testing.assert_allclose(history["train_loss"], straight_history["train_loss"], rtol=0, atol=1e-6)
    a = torch.load(straight.weight_dir / "last.pt", weights_only=True)
    b = torch.load(resumed.weight_dir / "last.pt", weights_only=True)
    assert b["epoch"] == 2
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6)

    # Nothing is left to train: the trainer must not start again from epoch 1.
    again = ignite_training.train(tiny_config, global_config, resume=first.run_name)
    assert again.status == "completed" and again.epochs_completed == 2
    assert pd.read_csv(resumed.run_dir / "history.csv")["epoch"].tolist() == [1, 2]

    with pytest.raises(CheckpointError, match="trained by the 'ignite' routine; resume it with --routine ignite"):
        Run(tiny_config, global_config, "pytorch", resume=first.run_name)


class BoomError(Exception):
    """An error of a type that nothing in the project or in Ignite catches or wraps."""


@pytest.mark.parametrize(
    ("error", "status"),
    [(FloatingPointError, "failed"), (BoomError, "failed"), (KeyboardInterrupt, "interrupted")],
    ids=["nan-loss", "exception", "ctrl-c"],
)
def test_an_error_in_the_trainer_reaches_the_caller_unchanged_and_marks_the_run(
    tiny_config: dict, global_config: GlobalConfig, error: type[BaseException], status: str
) -> None:
    # dice_bce for the sanity check and two steps, then a NaN (the step's finite check raises) or ``error`` raised
    tiny_config["LOSS"] = ScriptedLoss(4, None if error is FloatingPointError else error)
    with pytest.raises(error) as raised:
        ignite_training.train(tiny_config, global_config)
    assert raised.type is error  # exactly: not wrapped by Ignite
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == status and row["error"].startswith(error.__name__)
    assert (Path(row["run_dir"]) / "config.json").is_file()


def test_an_error_in_the_evaluator_marks_the_run_failed(tiny_config: dict, global_config: GlobalConfig) -> None:
    BROKEN_METRIC_CALLS.clear()
    tiny_config.update(EPOCHS=1, METRICS={"broken": broken_metric}, CHECKPOINT_METRIC="val_loss")
    with pytest.raises(BoomError, match="metric"):
        ignite_training.train(tiny_config, global_config)
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "failed" and row["error"] == "BoomError: metric"


@pytest.fixture(name="suggested_lrs")
def fixture_suggested_lrs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Callable[[], list]:
    """A short range test (100 steps in a real run); returns a function that lists the lrs suggested so far."""
    monkeypatch.setattr(ignite_training, "LR_FIND_STEPS", 16)
    monkeypatch.setattr(ignite_training, "LR_FIND_RANGE", (1e-5, 0.1))
    caplog.set_level("INFO", logger=LOGGER.name)
    return lambda: [record.args[0] for record in caplog.records if record.getMessage().startswith("LR_FIND: the range")]


@pytest.mark.slow
def test_lr_find_trains_with_the_suggested_lr(
    tiny_config: dict, global_config: GlobalConfig, suggested_lrs: Callable[[], list]
) -> None:
    tiny_config.update(EPOCHS=1, SCHEDULER_CONFIG={"T_max": 2})  # the 2-epoch schedule: it is resumed to 2 epochs
    found = ignite_training.train({**tiny_config, "LR_FIND": True}, global_config)
    (suggestion,) = suggested_lrs()
    assert found.status == "completed" and 1e-5 < suggestion < 0.1 and suggestion != pytest.approx(3e-3)
    history = pd.read_csv(found.run_dir / "history.csv")
    assert history["lr"].tolist() == [pytest.approx(suggestion, rel=1e-12)]

    # The range test leaves no trace: the run is the one that OPTIMIZER_CONFIG's lr set to the suggestion gives.
    configured = ignite_training.train(
        {**tiny_config, "OPTIMIZER_CONFIG": {**tiny_config["OPTIMIZER_CONFIG"], "lr": suggestion}}, global_config
    )
    pd.testing.assert_frame_equal(
        history.drop(columns="seconds"), pd.read_csv(configured.run_dir / "history.csv").drop(columns="seconds")
    )

    # Resumed, the run keeps its lr (no second range test), and the cosine schedule goes on from the suggestion.
    resumed = ignite_training.train({**tiny_config, "EPOCHS": 2, "LR_FIND": True}, global_config, found.run_name)
    assert suggested_lrs() == [suggestion]
    lrs = pd.read_csv(resumed.run_dir / "history.csv")["lr"].tolist()
    assert lrs == [pytest.approx(suggestion, rel=1e-12), pytest.approx(suggestion / 2, rel=1e-9)]


@pytest.mark.slow
def test_lr_find_with_one_cycle_makes_the_suggestion_its_max_lr(
    tiny_config: dict, global_config: GlobalConfig, suggested_lrs: Callable[[], list]
) -> None:
    tiny_config.update(EPOCHS=1, LR_FIND=True, SCHEDULER=None, SCHEDULER_CONFIG={}, ONE_CYCLE={"max_lr": 0.01})
    result = ignite_training.train(tiny_config, global_config)
    (suggestion,) = suggested_lrs()
    # OneCycleLR starts at max_lr / 25
    assert pd.read_csv(result.run_dir / "history.csv")["lr"].tolist() == [pytest.approx(suggestion / 25)]
    last = torch.load(result.weight_dir / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["max_lr"] == pytest.approx(suggestion)
    assert last["scheduler"]["_step_count"] == 4 + 1  # stepped every batch


@pytest.mark.slow
def test_progress_bar_only_on_a_terminal(
    tiny_config: dict, global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = Run(tiny_config, global_config, "ignite")
    ignite_training.create_trainer(run).run(run.train_loader)
    assert "Iteration" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    ignite_training.create_trainer(run).run(run.train_loader)
    err = capsys.readouterr().err
    assert "Iteration: [1/4]" in err and "loss=" in err
    run.finish()
