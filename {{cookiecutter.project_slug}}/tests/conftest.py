"""Shared fixtures: temporary project folders and a tiny, fast experiment config."""

import copy
import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from config.overrides import ROUTINES
from config.paths import GlobalConfig, get_global_config
from config.train_config import TRAIN_CONFIG
from training.records import RunResult
from utils.losses import dice_bce

PROJECT_ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N runs N workers: one thread each, or their torch threads fight over the same cores.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and so do the processes that the tests start (the same float sums)


@pytest.fixture
def global_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GlobalConfig:
    """DATA_DIR, LOG_DIR and WEIGHT_DIR inside the test's temporary folder (also for subprocesses)."""
    for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.split("_", maxsplit=1)[0].lower()))
    return get_global_config()


def _tiny_config() -> dict:
    config = copy.deepcopy(TRAIN_CONFIG)
    config["MODEL_CONFIG"].update(base_channels=4, depth=2)
    config["DATASET_CONFIG"] = {"n_samples": 40, "size": 32, "seed": 0}
    config["DATA_LOADER_CONFIG"] = {"batch_size": 8, "num_workers": 0}
    config["EPOCHS"] = 2
    config["DEVICE"] = "cpu"
    return config


@pytest.fixture
def tiny_config() -> dict:
    """The default config shrunk to run an epoch in about a second on a CPU."""
    return _tiny_config()


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[RunResult, GlobalConfig]]:
    """``shared_run(routine)``: one completed 2-epoch run of the tiny config per routine and test session, in its
    own folders, with the GlobalConfig it wrote to; the tests that only read a finished run share it."""
    runs: dict[str, tuple[RunResult, GlobalConfig]] = {}

    def get(routine: str) -> tuple[RunResult, GlobalConfig]:
        if routine not in runs:
            root = tmp_path_factory.mktemp(f"shared_{routine}")
            with pytest.MonkeyPatch.context() as monkeypatch:
                for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
                    monkeypatch.setenv(name, str(root / name.split("_", maxsplit=1)[0].lower()))
                folders = get_global_config()
            module = importlib.import_module(f"training.{routine}_training")
            runs[routine] = (module.train(_tiny_config(), folders), folders)
        return runs[routine]

    return get


@pytest.fixture(scope="session")
def shared_cv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, GlobalConfig]:
    """One completed cross-validation per test session (``train.py --folds 3`` of the tiny config, 30 samples, the
    raw routine when the project has it), in its own folders: (its CvResult, the GlobalConfig it wrote to). The
    tests that only read a finished cross-validation share it."""
    from training.folds import cross_validate  # pylint: disable=import-outside-toplevel  # only when asked for

    root = tmp_path_factory.mktemp("shared_cv")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
            monkeypatch.setenv(name, str(root / name.split("_", maxsplit=1)[0].lower()))
        folders = get_global_config()
    config = {**_tiny_config(), "FOLDS": 3}
    config["DATASET_CONFIG"] = {**config["DATASET_CONFIG"], "n_samples": 30}
    routine = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]
    return cross_validate(config, folders, routine), folders


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


class ScriptedLoss:
    """dice_bce until its ``at``-th call; from then on (or at that call only, if ``once``) a NaN loss, or ``error``
    raised. A config's functions must be importable by name to be saved (a closure is refused), so a loss with a
    plan is an object; its copies (the run deep-copies its config) share one count, as a closure's calls would."""

    def __init__(self, at: int, error: type[BaseException] | None = None, once: bool = False) -> None:
        self.at, self.error, self.once = at, error, once
        self._calls = [0]

    def __deepcopy__(self, memo: dict) -> "ScriptedLoss":
        return self

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._calls[0] += 1
        calls = self._calls[0]
        if calls < self.at or (self.once and calls > self.at):
            return dice_bce(logits, target)
        if self.error is None:
            return dice_bce(logits, target) * float("nan")
        raise self.error("in the loss")
