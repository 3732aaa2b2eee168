"""The raw PyTorch routine end to end: what a run leaves, its numbers, and the command lines around it."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import predict
import train
from config.paths import GlobalConfig
from config.schema import validate_config
from config.serialize import ConfigError
from models.unet import UNet
from training import pytorch_training
from training.build import build_metrics
from training.checkpoint import CheckpointError
from training.run import Run
from training.sanity_checks import SanityCheckError, sanity_checks
from utils.losses import dice_bce
from utils.metrics import dice


def nan_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A loss that is NaN from the first batch on (defined at the top level: a config's functions are saved by name)."""
    return (logits - target).mean() / 0.0


CHECKPOINT_KEYS = {
    "format_version",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "best",
    "config",
    "routine",
    "rng",
}


@pytest.fixture(name="finished_run")
def fixture_finished_run(shared_run: Callable) -> pytorch_training.RunResult:
    """The session's completed 2-epoch run of the tiny config (shared: read it, do not change it)."""
    return shared_run("pytorch")[0]


@pytest.fixture(name="finished_config")
def fixture_finished_config(shared_run: Callable) -> GlobalConfig:
    """The folders of the session's shared run."""
    return shared_run("pytorch")[1]


def test_run_writes_every_file_of_the_design(
    finished_run: pytorch_training.RunResult, finished_config: GlobalConfig
) -> None:
    global_config = finished_config
    run_dir, weight_dir = finished_run.run_dir, finished_run.weight_dir
    assert finished_run.status == "completed"
    assert run_dir == global_config.LOG_DIR / finished_run.run_name
    assert weight_dir == global_config.WEIGHT_DIR / finished_run.run_name
    for path in (
        run_dir / "config.json",
        run_dir / "history.csv",
        run_dir / "curves.png",
        run_dir / "train.log",
        weight_dir / "last.pt",
        weight_dir / "best.pt",
        global_config.LOG_DIR / "experiments.csv",
    ):
        assert path.is_file() and path.stat().st_size > 0, path
    assert Image.open(run_dir / "curves.png").size[0] > 100
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["MODEL"] == "models.unet.UNet" and config["OPTIMIZER"] == "torch.optim.adamw.AdamW"


def test_history_and_experiments_csv_have_the_design_columns(
    finished_run: pytorch_training.RunResult, finished_config: GlobalConfig
) -> None:
    global_config = finished_config
    history = pd.read_csv(finished_run.run_dir / "history.csv")
    assert list(history.columns) == [
        "epoch", "train_loss", "val_loss", "val_dice", "val_dice_pooled", "val_iou", "val_iou_pooled", "lr", "seconds"
    ]  # fmt: skip
    assert history["epoch"].tolist() == [1, 2]
    assert np.isfinite(history.drop(columns="epoch").to_numpy()).all()

    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert len(experiments) == 1
    row = experiments.iloc[0]
    assert list(experiments.columns[:9]) == [
        "run_name",
        "session_name",
        "routine",
        "status",
        "started_at",
        "finished_at",
        "duration_s",
        "epochs_completed",
        "best_epoch",
    ]
    assert row["run_name"] == finished_run.run_name and row["routine"] == "pytorch"
    assert row["status"] == "completed" and row["epochs_completed"] == 2 and row["world_size"] == 1
    best = history.loc[history["epoch"] == row["best_epoch"]].iloc[0]
    assert row["best_val_dice"] == pytest.approx(best["val_dice"])
    assert row["final_val_loss"] == pytest.approx(history["val_loss"].iloc[-1])
    assert row["MODEL"] == "models.unet.UNet"
    assert row["MODEL_CONFIG.base_channels"] == 4 and row["OPTIMIZER_CONFIG.lr"] == pytest.approx(3e-3)
    assert row["device"] == "cpu" and row["run_dir"] == str(finished_run.run_dir)


def test_checkpoints_load_weights_only_in_the_one_format(finished_run: pytorch_training.RunResult) -> None:
    history = pd.read_csv(finished_run.run_dir / "history.csv")
    last = torch.load(finished_run.weight_dir / "last.pt", weights_only=True)
    best = torch.load(finished_run.weight_dir / "best.pt", weights_only=True)
    assert CHECKPOINT_KEYS <= set(last)
    assert last["routine"] == "pytorch" and last["epoch"] == 2 and last["format_version"] == 2
    assert best["epoch"] == finished_run.best_epoch
    assert best["best"]["value"] == pytest.approx(history["val_dice"].max())
    json.dumps(last["config"])  # JSON-able


def test_evaluate_averages_over_samples_with_a_short_last_batch(tiny_config: dict, global_config: GlobalConfig) -> None:
    torch.manual_seed(0)
    images, masks = torch.randn(10, 1, 32, 32), (torch.rand(10, 1, 32, 32) > 0.5).float()
    run = Run(tiny_config, global_config, "pytorch")
    run.val_loader = DataLoader(TensorDataset(images, masks), batch_size=4)  # batches of 4, 4 and 2
    val = pytorch_training.evaluate(run)
    with torch.no_grad():
        logits = run.model.eval()(images)
    assert val["val_loss"] == pytest.approx(dice_bce(logits, masks).item(), abs=1e-6)
    assert val["val_dice"] == pytest.approx(dice(logits, masks).mean().item(), abs=1e-6)


@pytest.mark.slow
def test_one_cycle_steps_the_learning_rate_every_batch(tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config.update(SCHEDULER=None, SCHEDULER_CONFIG={}, ONE_CYCLE={"max_lr": 0.01, "pct_start": 0.5})
    result = pytorch_training.train(tiny_config, global_config)
    lrs = pd.read_csv(result.run_dir / "history.csv")["lr"].tolist()
    # 2 epochs of 4 batches: epoch 1 starts at max_lr / 25; by epoch 2 the lr has risen to near the peak (step 3).
    assert lrs[0] == pytest.approx(0.01 / 25) and 0.008 < lrs[1] < 0.01
    last = torch.load(result.weight_dir / "last.pt", weights_only=True)
    assert last["scheduler"]["_step_count"] == 2 * 4 + 1


def test_lr_find_is_refused_by_this_routine(tiny_config: dict, global_config: GlobalConfig) -> None:
    with pytest.raises(ConfigError, match="LR_FIND: the pytorch routine has no learning-rate finder"):
        pytorch_training.train({**tiny_config, "LR_FIND": True}, global_config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"MODEL_CONFIG": {"out_channels": 2, "base_channels": 4, "depth": 2}},
            "sanity check 'output channels' failed",
        ),
        ({"LOSS": nan_loss}, "sanity check 'finite loss' failed"),
    ],
)
def test_sanity_checks_stop_the_run_before_anything_is_written(
    tiny_config: dict, global_config: GlobalConfig, change: dict, message: str
) -> None:
    with pytest.raises(SanityCheckError, match=message):
        pytorch_training.train({**tiny_config, **change}, global_config)
    assert not global_config.LOG_DIR.exists()


def test_sanity_checks_catch_state_outside_the_state_dict(tiny_config: dict) -> None:
    class Drifting(UNet):
        """A model whose output depends on an attribute that is not saved."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.offset = torch.randn(1)  # a plain attribute, not a buffer: lost by state_dict

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + self.offset

    config = validate_config({**tiny_config, "MODEL": Drifting})
    model = Drifting(**config["MODEL_CONFIG"])
    images, masks = torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    with pytest.raises(SanityCheckError, match="sanity check 'save/load round trip' failed"):
        sanity_checks(config, model, images, masks, dice_bce, build_metrics(config), torch.device("cpu"))


@pytest.mark.slow
def test_same_seed_gives_the_same_run(tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config["EPOCHS"] = 1
    first = pytorch_training.train(tiny_config, global_config)
    second = pytorch_training.train(tiny_config, global_config)
    assert first.run_name != second.run_name
    assert first.final == second.final
    assert len(pd.read_csv(global_config.LOG_DIR / "experiments.csv")) == 2


@pytest.mark.slow
def test_resume_continues_the_same_run_to_the_same_weights(tiny_config: dict, global_config: GlobalConfig) -> None:
    tiny_config["SCHEDULER_CONFIG"] = {"T_max": 3}
    straight = pytorch_training.train({**tiny_config, "EPOCHS": 3}, global_config)
    first = pytorch_training.train({**tiny_config, "EPOCHS": 2}, global_config)
    before = pd.read_csv(global_config.LOG_DIR / "experiments.csv").set_index("run_name").loc[first.run_name]
    started_at, duration = before["started_at"], before["duration_s"]
    resumed = pytorch_training.train({**tiny_config, "EPOCHS": 3}, global_config, resume=first.run_name)
    assert resumed.run_name == first.run_name and resumed.epochs_completed == 3
    changed = {**tiny_config, "EPOCHS": 4, "MODEL_CONFIG": {**tiny_config["MODEL_CONFIG"], "base_channels": 8}}
    with pytest.raises(
        CheckpointError, match=r"the config differs from the run's in MODEL_CONFIG.base_channels \(run: 4, now: 8\)"
    ):
        pytorch_training.train(changed, global_config, resume=first.run_name)
    history = pd.read_csv(resumed.run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert len(experiments) == 2  # the resumed run's row was updated, not duplicated
    row = experiments.set_index("run_name").loc[first.run_name]
    assert row["started_at"] == started_at and row["duration_s"] >= duration  # the run's, not the last session's
    a = torch.load(straight.weight_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed.weight_dir / "last.pt", weights_only=True)["model"]
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.usefixtures("global_config")
def test_train_cli_then_predict_cli_on_its_checkpoint(tmp_path: Path, run_script: Callable) -> None:
    overrides = [
        "--set",
        "MODEL_CONFIG.base_channels=4",
        "--set",
        "MODEL_CONFIG.depth=2",
        "--set",
        "DATASET_CONFIG={'n_samples': 24, 'size': 32}",
        "--set",
        "DEVICE='cpu'",
        "--epochs",
        "1",
    ]
    trained = run_script("train.py", *overrides)
    assert trained.returncode == 0, trained.stderr
    assert "completed" in trained.stdout

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 44), dtype=np.uint8)).save(inputs / "odd_size.png")
    np.save(inputs / "array.npy", rng.random((32, 32), dtype=np.float32))
    predicted = run_script("predict.py", "-i", str(inputs), "-o", str(tmp_path / "masks"))
    assert predicted.returncode == 0, predicted.stderr
    mask = np.array(Image.open(tmp_path / "masks" / "odd_size.png"))
    assert mask.shape == (30, 44) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "masks" / "array.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "EPOCHS=0"], "error: EPOCHS: must be > 0"),
        (["--set", "TYPO=1"], "error: --set 'TYPO=1': unknown key 'TYPO'"),
        (["--set", "DEVICE='cuda:7'"], "error: device 'cuda:7' requested"),
        (["--config", "missing.py"], "error: --config "),
        (
            ["--set", "DATASET=utils.data.folder.SegmentationFolder", "--set", "DATASET_CONFIG={'root': '/nope'}"],
            "error: dataset folder not found: /nope",
        ),
        (["--resume", "no_such_run"], "error: --resume no_such_run: neither a checkpoint file nor a run"),
    ],
)
def test_train_cli_bad_input_is_one_line_and_writes_nothing(
    global_config: GlobalConfig, args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    if "cuda" in " ".join(args) and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert train.main(args) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith(message), stderr
    assert len(stderr.splitlines()) == 1
    assert not global_config.LOG_DIR.exists() and not global_config.WEIGHT_DIR.exists()


def test_predict_cli_bad_input(global_config: GlobalConfig, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert predict.main(["-i", str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "out")]) == 2
    assert "error: no such file, folder or match" in capsys.readouterr().err
    (tmp_path / "x.png").write_bytes(b"not a png")
    assert predict.main(["-i", str(tmp_path / "x.png"), "-o", str(tmp_path / "out")]) == 2
    assert f"no run with a best.pt in {global_config.WEIGHT_DIR}" in capsys.readouterr().err
