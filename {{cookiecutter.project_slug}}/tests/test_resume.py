"""Resume from anything: the checkpoint decides where a run goes on, whatever happened to its logs since."""

import importlib
import shutil

import pandas as pd
import pytest

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.checkpoint import CheckpointError, load_checkpoint

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lost", ["history.csv", "LOG_DIR"])
@pytest.mark.parametrize("routine", ROUTINES)
def test_resume_starts_after_the_checkpoints_epoch_when_the_logs_are_gone(
    routine: str, lost: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    train = importlib.import_module(f"training.{routine}_training").train
    config = {**tiny_config, "EPOCHS": 2, "EARLY_STOPPING": None}
    first = train(config, global_config)
    if lost == "LOG_DIR":
        shutil.rmtree(global_config.LOG_DIR)
    else:
        (first.run_dir / "history.csv").unlink()

    resumed = train({**config, "EPOCHS": 3}, global_config, resume="latest")
    # One epoch more, the third: not three epochs from "epoch 1" on the weights of epoch 2.
    assert resumed.run_name == first.run_name and resumed.status == "completed"
    assert load_checkpoint(first.weight_dir / "last.pt")["epoch"] == 3
    assert pd.read_csv(first.run_dir / "history.csv")["epoch"].tolist() == [3]
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").set_index("run_name").loc[first.run_name]
    assert row["status"] == "completed" and row["epochs_completed"] == 3 and resumed.epochs_completed == 3


@pytest.mark.parametrize("routine", ROUTINES)
def test_one_cycle_resumed_with_more_epochs_is_refused_before_training(
    routine: str, tiny_config: dict, global_config: GlobalConfig
) -> None:
    train = importlib.import_module(f"training.{routine}_training").train
    config = {**tiny_config, "SCHEDULER": None, "ONE_CYCLE": {"max_lr": 1e-2}, "EPOCHS": 1}
    first = train(config, global_config)
    before = (first.weight_dir / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="ONE_CYCLE's schedule spans the run's 1 epochs"):
        train({**config, "EPOCHS": 3}, global_config, resume=first.run_name)
    assert (first.weight_dir / "last.pt").read_bytes() == before
    assert pd.read_csv(global_config.LOG_DIR / "experiments.csv")["status"].tolist() == ["completed"]
