"""Interrupting a run for real: SIGTERM to a training process, then resuming it; SIGKILL while saving."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import train
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # processes of their own: torchrun, signals, kills

# A tiny config whose samples take a while when SLOW_SAMPLE_S is set, so that a signal lands mid-training.
SLOW_CONFIG = textwrap.dedent(
    """
    import os
    import time

    from config.train_config import TRAIN_CONFIG
    from utils.data.synthetic import SyntheticShapes


    class SlowShapes(SyntheticShapes):
        def __getitem__(self, index):
            time.sleep(float(os.environ.get("SLOW_SAMPLE_S", "0")))
            return super().__getitem__(index)


    TRAIN_CONFIG = {
        **TRAIN_CONFIG,
        "DEVICE": "cpu",
        "MODEL_CONFIG": {**TRAIN_CONFIG["MODEL_CONFIG"], "base_channels": 4, "depth": 2},
        "DATASET": SlowShapes,
        "DATASET_CONFIG": {"n_samples": 40, "size": 32, "seed": 0},
        "DATA_LOADER_CONFIG": {"batch_size": 8, "num_workers": 0},
        "SCHEDULER_CONFIG": {"T_max": 4},
        "EPOCHS": 4,
        "EARLY_STOPPING": None,
    }
    """
)


def _wait_for_epochs(log_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the run in ``log_dir`` has recorded at least one epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        histories = list(log_dir.glob("*/history.csv"))
        if histories and len(histories[0].read_text().splitlines()) >= 2:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise TimeoutError("the run recorded no epoch in time")


@pytest.mark.parametrize("routine", ROUTINES)
def test_sigterm_interrupts_the_run_and_resume_finishes_it_as_if_uninterrupted(
    routine: str, global_config: GlobalConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "slow_config.py"
    config_file.write_text(SLOW_CONFIG)
    root = Path(train.__file__).parent
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # waited for below
        [sys.executable, "train.py", "--config", str(config_file), "--routine", routine],
        cwd=root,
        env={**os.environ, "SLOW_SAMPLE_S": "0.03"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_epochs(global_config.LOG_DIR, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGTERM
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    run_name, done = row["run_name"], int(row["epochs_completed"])
    assert row["status"] == "interrupted" and 1 <= done < 4
    assert f"continue it with: python train.py --routine {routine} --config {config_file} --resume {run_name}" in stderr
    assert load_checkpoint(global_config.WEIGHT_DIR / run_name / "last.pt")["epoch"] == done
    run_dir = global_config.LOG_DIR / run_name  # curves.png drawn after the last epoch recorded
    assert (run_dir / "curves.png").stat().st_mtime_ns >= (run_dir / "history.csv").stat().st_mtime_ns

    # Resume (fast now), then train the same config without interruption, and compare.
    monkeypatch.delenv("SLOW_SAMPLE_S", raising=False)
    assert train.main(["--config", str(config_file), "--routine", routine, "--resume", "latest"]) == 0
    assert train.main(["--config", str(config_file), "--routine", routine]) == 0
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert experiments["run_name"].tolist()[0] == run_name and len(experiments) == 2
    assert experiments["status"].tolist() == ["completed", "completed"]
    resumed, straight = (
        load_checkpoint(global_config.WEIGHT_DIR / name / "last.pt") for name in experiments["run_name"]
    )
    history = pd.read_csv(global_config.LOG_DIR / run_name / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4] and resumed["epoch"] == straight["epoch"] == 4
    assert (run_dir / "curves.png").stat().st_mtime_ns >= (run_dir / "history.csv").stat().st_mtime_ns
    if routine == "fastai":  # the design asks the same epochs and a dice within 0.03 of fastai
        assert abs(experiments["final_val_dice"][0] - experiments["final_val_dice"][1]) <= 0.03
    else:
        for name, tensor in straight["model"].items():
            torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=1e-6)


SAVE_FOREVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from training.checkpoint import FORMAT_VERSION, save_checkpoint

    path, version = Path(sys.argv[1]), 0
    while True:
        version += 1
        save_checkpoint({"format_version": FORMAT_VERSION, "model": {"w": torch.full((4_000_000,), float(version))},
                         "version": version}, path)
        print(version, flush=True)
    """
)


def test_sigkill_while_saving_leaves_the_previous_checkpoint_readable(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    root = Path(train.__file__).parent
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # killed below
        [sys.executable, "-c", SAVE_FOREVER, str(path)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    while int(process.stdout.readline()) < 3:  # a few complete saves, then kill during the next ones
        pass
    time.sleep(0.05)
    process.kill()
    process.wait(timeout=30)
    checkpoint = load_checkpoint(path)
    assert checkpoint["version"] >= 3
    assert torch.equal(checkpoint["model"]["w"], torch.full((4_000_000,), float(checkpoint["version"])))
