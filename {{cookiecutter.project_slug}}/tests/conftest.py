"""Shared fixtures: temporary project folders and a tiny, fast experiment config."""

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from config.config import GlobalConfig, get_global_config
from config.train_config import TRAIN_CONFIG
from training.common import RunResult

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def global_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GlobalConfig:
    """DATA_DIR, LOG_DIR and WEIGHT_DIR inside the test's temporary folder (also for subprocesses)."""
    for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.split("_", maxsplit=1)[0].lower()))
    return get_global_config()


@pytest.fixture
def tiny_config() -> dict:
    """The default config shrunk to run an epoch in about a second on a CPU."""
    config = copy.deepcopy(TRAIN_CONFIG)
    config["MODEL_CONFIG"].update(bulk_ch=4, n_recursions=2)
    config["DATASET_CONFIG"] = {"n_samples": 40, "size": 32, "seed": 0}
    config["DATA_LOADER_CONFIG"] = {"batch_size": 8, "num_workers": 0}
    config["SCHEDULER_CONFIG"] = {"T_max": 2}
    config["EPOCHS"] = 2
    config["DEVICE"] = "cpu"
    return config


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )


@pytest.fixture
def run_script() -> Callable[..., subprocess.CompletedProcess]:
    """Run a project script (``run_script("train.py", "--epochs", "1")``) in a subprocess from the project root."""
    return _run_script


def _run_files(result: RunResult) -> set[str]:
    """The run's files, relative to its log and weight folders (TensorBoard's by folder: their names hold a time)."""
    files = set()
    for folder, root in (("logs", result.run_dir), ("weights", result.weight_dir)):
        for path in root.rglob("*"):
            if path.is_file():
                relative = path.relative_to(root)
                events = path.name.startswith("events.out.tfevents")
                files.add(f"{folder}/{relative.parent / 'events' if events else relative}")
    return files


@pytest.fixture
def files_of() -> Callable[[RunResult], set[str]]:
    """The files a run left, to compare routines: ``files_of(result)``."""
    return _run_files
