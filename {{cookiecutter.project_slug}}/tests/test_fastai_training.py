"""The fastai routine end to end: the same outputs and numbers as the raw routine, resume, errors, fastai's extras."""

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ScriptedLoss

import predict
from config.paths import ROOT_PATH, GlobalConfig
from models.unet import UNet
from training import fastai_training
from training.build import current_lr
from training.checkpoint import CheckpointError
from training.run import Run

HISTORY_COLUMNS = [
    "epoch", "train_loss", "val_loss", "val_dice", "val_dice_pooled", "val_iou", "val_iou_pooled", "lr", "seconds"
]  # fmt: skip
CHECKPOINT_KEYS = {"format_version", "model", "optimizer", "scheduler", "scaler", "epoch", "best", "config", "routine"}


def weights(result: fastai_training.RunResult) -> dict[str, torch.Tensor]:
    """The model weights of the run's last checkpoint."""
    return torch.load(result.weight_dir / "last.pt", weights_only=True)["model"]


def test_a_run_leaves_the_files_of_the_design_and_prints_nothing(
    tiny_config: dict, global_config: GlobalConfig, capsys: pytest.CaptureFixture, files_of: Callable
) -> None:
    tiny_config["EPOCHS"] = 1  # two epochs in the comparison with the raw routine below
    result = fastai_training.train(tiny_config, global_config)
    assert result.status == "completed" and result.epochs_completed == 1
    # fastprogress draws bars on stdout even when it is not a terminal: the routine turns them off there
    assert capsys.readouterr().out == ""
    assert {"logs/config.json", "logs/history.csv", "logs/curves.png", "weights/last.pt", "weights/best.pt"} <= (
        files_of(result)
    )
    history = pd.read_csv(result.run_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1]
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["routine"] == "fastai" and row["status"] == "completed" and row["epochs_completed"] == 1
    last = torch.load(result.weight_dir / "last.pt", weights_only=True)
    assert CHECKPOINT_KEYS <= set(last) and last["routine"] == "fastai" and last["epoch"] == 1
    model, ch_in = predict.load_model(result.weight_dir / "best.pt", torch.device("cpu"))
    assert model(torch.zeros(1, ch_in, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.slow
def test_same_files_columns_and_numbers_as_the_raw_routine(
    tiny_config: dict, global_config: GlobalConfig, files_of: Callable
) -> None:
    raw_training = pytest.importorskip("training.pytorch_training", reason="the project has no raw routine")
    # Batches of 12, 12 and 8: the short last batch must count for its 8 samples in both routines. A high lr gets
    # the dice well above 0 in two epochs, so that comparing it means something.
    tiny_config["DATA_LOADER_CONFIG"] = {"batch_size": 12, "num_workers": 0}
    tiny_config["OPTIMIZER_CONFIG"] = {"lr": 0.03, "weight_decay": 1e-4}
    fastai = fastai_training.train(tiny_config, global_config)
    raw = raw_training.train(tiny_config, global_config)
    assert fastai.status == raw.status == "completed"

    assert files_of(fastai) == files_of(raw)
    fastai_history = pd.read_csv(fastai.run_dir / "history.csv")
    raw_history = pd.read_csv(raw.run_dir / "history.csv")
    assert list(fastai_history.columns) == list(raw_history.columns)
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv").set_index("routine")
    assert experiments.loc["fastai"].dropna().index.tolist() == experiments.loc["pytorch"].dropna().index.tolist()
    fastai_last = torch.load(fastai.weight_dir / "last.pt", weights_only=True)
    raw_last = torch.load(raw.weight_dir / "last.pt", weights_only=True)
    assert set(fastai_last) == set(raw_last)

    # Same batches, same steps (fastai's own step with GradientClip): the same numbers up to float rounding.
    np.testing.assert_allclose(fastai_history["train_loss"], raw_history["train_loss"], rtol=0, atol=1e-4)
    assert raw_history["val_dice"].iloc[-1] > 0.1
    np.testing.assert_allclose(fastai_history["val_dice"], raw_history["val_dice"], rtol=0, atol=0.03)
    for column in ("val_loss", "val_dice", "val_dice_pooled", "val_iou", "val_iou_pooled"):
        np.testing.assert_allclose(fastai_history[column], raw_history[column], rtol=0, atol=1e-4)
    np.testing.assert_allclose(fastai_history["lr"], raw_history["lr"], rtol=1e-12)


@pytest.mark.slow
def test_resume_continues_the_same_run_and_only_with_this_routine(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    tiny_config["SCHEDULER_CONFIG"] = {"T_max": 3}
    straight = fastai_training.train({**tiny_config, "EPOCHS": 3}, global_config)
    first = fastai_training.train({**tiny_config, "EPOCHS": 2}, global_config)
    resumed = fastai_training.train({**tiny_config, "EPOCHS": 3}, global_config, resume=first.run_name)
    assert resumed.run_name == first.run_name and resumed.epochs_completed == 3
    assert pd.read_csv(resumed.run_dir / "history.csv")["epoch"].tolist() == [1, 2, 3]
    assert len(pd.read_csv(global_config.LOG_DIR / "experiments.csv")) == 2  # updated, not duplicated
    for name, tensor in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], tensor, rtol=0, atol=1e-6)

    # a finished run: nothing left to train
    again = fastai_training.train({**tiny_config, "EPOCHS": 3}, global_config, resume=first.run_name)
    assert again.status == "completed" and again.epochs_completed == 3
    assert pd.read_csv(resumed.run_dir / "history.csv")["epoch"].tolist() == [1, 2, 3]

    with pytest.raises(CheckpointError, match="trained by the 'fastai' routine; resume it with --routine fastai"):
        Run(tiny_config, global_config, "pytorch", resume=first.run_name)


@pytest.mark.slow
def test_one_cycle_is_fit_one_cycle_and_resumes_mid_cycle(tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config.update(SCHEDULER=None, SCHEDULER_CONFIG={}, ONE_CYCLE={"max_lr": 0.01, "pct_start": 0.5})
    straight = fastai_training.train(tiny_config, global_config)
    # 2 epochs of 4 batches: from max_lr / 25 up to the peak at half way, the start of epoch 2
    lrs = pd.read_csv(straight.run_dir / "history.csv")["lr"].tolist()
    assert lrs == pytest.approx([0.01 / 25, 0.01])
    last = torch.load(straight.weight_dir / "last.pt", weights_only=True)  # fastai's numpy floats would fail here
    assert last["scheduler"] is None  # fastai schedules the cycle itself
    assert last["optimizer"]["param_groups"][0]["max_lr"] == 0.01
    assert 0.9 < last["optimizer"]["param_groups"][0]["betas"][0] < 0.95  # momentum cycled, on its way back up

    # the sanity check, 4 training and 1 validation batch, then Ctrl-C in epoch 2
    interrupting = {
        **tiny_config,
        "LOSS": ScriptedLoss(7, KeyboardInterrupt, once=True),
    }  # the same config for the resume, as resume demands
    with pytest.raises(KeyboardInterrupt):
        fastai_training.train(interrupting, global_config)
    interrupted = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[-1]
    assert interrupted["status"] == "interrupted" and interrupted["epochs_completed"] == 1
    resumed = fastai_training.train(interrupting, global_config, resume=interrupted["run_name"])
    assert resumed.status == "completed" and resumed.epochs_completed == 2
    for name, tensor in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], tensor, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_lr_find_trains_with_its_suggestion_and_leaves_no_trace(
    tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # lr_find takes 100 steps: small images and batches keep them quick
    tiny_config.update(
        EPOCHS=1,
        DATASET_CONFIG={"n_samples": 40, "size": 16, "seed": 0},
        DATA_LOADER_CONFIG={"batch_size": 4, "num_workers": 0},
    )
    models_before = {path.name for path in (ROOT_PATH / "models").iterdir()}
    with caplog.at_level(logging.INFO, logger="project"):
        found = fastai_training.train({**tiny_config, "LR_FIND": True}, global_config)
    assert "lr_find: training with lr" in caplog.text
    lr = float(pd.read_csv(found.run_dir / "history.csv")["lr"].iloc[0])
    assert lr != pytest.approx(tiny_config["OPTIMIZER_CONFIG"]["lr"])
    # lr_find restored the model, the optimizer and the RNG: the same run as one set to that lr from the start
    tiny_config["OPTIMIZER_CONFIG"] = {**tiny_config["OPTIMIZER_CONFIG"], "lr": lr}
    direct = fastai_training.train(tiny_config, global_config)
    for name, tensor in weights(direct).items():
        torch.testing.assert_close(weights(found)[name], tensor, rtol=0, atol=1e-6)
    found_groups = torch.load(found.weight_dir / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    direct_groups = torch.load(direct.weight_dir / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert found_groups[0]["lr"] == pytest.approx(direct_groups[0]["lr"])  # the SCHEDULER starts from it too
    # lr_find saved the model to a temporary folder, not to ./models (fastai's default, a package here)
    assert {path.name for path in (ROOT_PATH / "models").iterdir()} == models_before


@pytest.mark.slow
def test_fp16_loss_scaling_takes_the_raw_routines_steps(tiny_config: dict, global_config: GlobalConfig) -> None:
    """fp16 needs CUDA in a run; on a CPU the callback's scaler logic is checked against the raw routine's step."""
    raw_training = pytest.importorskip("training.pytorch_training", reason="the project has no raw routine")

    def fp16_run() -> Run:
        run = Run({**tiny_config, "GRAD_CLIP": 0.5}, global_config, "fastai")
        # Too large a first scale overflows fp16: steps are skipped while the scaler lowers it, then taken.
        run.dtype, run.scaler = torch.float16, torch.amp.GradScaler("cpu", init_scale=1e6)
        return run

    raw = fp16_run()
    raw.begin_epoch(1)
    raw_training.train_one_epoch(raw, 1)
    fastai = fp16_run()
    initial = {name: tensor.clone() for name, tensor in fastai.raw_model.state_dict().items()}
    learn = fastai_training.build_learner(fastai)
    with learn.no_logging():
        learn.fit(1, lr=current_lr(fastai.optimizer), cbs=fastai_training.RunEventsCallback(fastai))
    assert fastai.scaler.get_scale() == raw.scaler.get_scale() < 1e6
    trained = fastai.raw_model.state_dict()
    assert any(not torch.equal(trained[name], tensor) for name, tensor in initial.items())
    for name, tensor in raw.raw_model.state_dict().items():
        torch.testing.assert_close(trained[name], tensor, rtol=0, atol=1e-6)


class InterruptedUNet(UNet):
    """A UNet whose forward pass is interrupted (Ctrl-C) from its 5th call on: in training, after the sanity checks."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        InterruptedUNet.calls += 1
        if InterruptedUNet.calls >= 5:
            raise KeyboardInterrupt
        return super().forward(x)


def test_ctrl_c_in_a_forward_pass_marks_the_run_interrupted(tiny_config: dict, global_config: GlobalConfig) -> None:
    InterruptedUNet.calls = 0
    tiny_config.update(MODEL=InterruptedUNet, MIXED_PRECISION="bf16")
    with pytest.raises(KeyboardInterrupt):
        fastai_training.train(tiny_config, global_config)
    assert pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]["status"] == "interrupted"
    assert not torch.is_autocast_enabled("cpu")  # the interrupted forward pass's autocast was left all the same
