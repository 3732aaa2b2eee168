"""What the tables of user errors (tests/test_user_errors_*.py) check of every case: one line, its exit status,
no traceback, and nothing already under LOG_DIR and WEIGHT_DIR changed or left ``running``."""

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A run of about a second on a CPU (one epoch of 16 images of 32x32, a U-Net of depth 2 with 4 base channels).
TINY = (
    *("--set", "DATASET_CONFIG.n_samples=16", "--set", "DATASET_CONFIG.size=32"),
    *("--set", "MODEL_CONFIG.depth=2", "--set", "MODEL_CONFIG.base_channels=4", "--set", "DEVICE=cpu", "--epochs", "1"),
)


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A project command (``script("train.py", ...)``) in a subprocess from the project root, with ``env`` added."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def train_once(root: Path) -> Path:
    """Train one tiny run with LOG_DIR and WEIGHT_DIR under ``root``; return ``root``."""
    env = {name: str(root / name.split("_", maxsplit=1)[0].lower()) for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR")}
    result = script("train.py", *TINY, env=env)
    assert result.returncode == 0, result.stderr
    return root


def copy_run(trained: Path, log_dir: Path, weight_dir: Path) -> str:
    """Copy the trained run into a case's own LOG_DIR and WEIGHT_DIR (the case may not touch it); its name."""
    shutil.copytree(trained / "log", log_dir, dirs_exist_ok=True)
    shutil.copytree(trained / "weight", weight_dir, dirs_exist_ok=True)
    return next(path.name for path in weight_dir.iterdir() if path.is_dir())


def write_images(folder: Path, count: int, truncated: int | None = None) -> Path:
    """``count`` random 32x32 image/mask pairs in ``folder``/images and /masks; image ``truncated`` cut in half."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "images" / f"{index}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8) * 255).save(folder / "masks" / f"{index}.png")
    if truncated is not None:
        path = folder / "images" / f"{truncated}.png"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return folder


def snapshot(*folders: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folders``, by path."""
    found: dict[str, bytes | None] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            found[str(path)] = path.read_bytes() if path.is_file() else None
    return found


def experiment_rows(log_dir: Path) -> list[dict[str, str]]:
    """The rows of LOG_DIR/experiments.csv (none when there is no such file)."""
    path = log_dir / "experiments.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def check_one_line(result: subprocess.CompletedProcess, status: int, words: tuple[str, ...]) -> str:
    """The command exited with ``status`` and ended with one error line holding ``words``; no traceback."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") or ": error: " in last, result.stderr  # ours, or argparse's "prog: error: ..."
    for word in words:
        assert word in last, f"{word!r} not in {last!r}"
    return last


def check_nothing_lost(
    before: dict[str, bytes | None], after: dict[str, bytes | None], log_dir: Path, failed_run: bool, words: tuple
) -> None:
    """Nothing that existed changed; a new run (only where ``failed_run``) is one row, failed with ``words``."""
    rows = experiment_rows(log_dir)
    assert [row["run_name"] for row in rows if row["status"] == "running"] == []
    old_csv = str(log_dir / "experiments.csv")
    changed = {path for path, data in before.items() if after.get(path, b"") != data and path != old_csv}
    assert changed == set(), f"changed or removed: {sorted(changed)}"
    new = sorted(set(after) - set(before))
    if not failed_run:
        assert new == [] and after.get(old_csv) == before.get(old_csv), f"left behind: {new}"
        return
    old_names = {row["run_name"] for row in csv.DictReader(io.StringIO((before.get(old_csv) or b"").decode()))}
    added = [row for row in rows if row["run_name"] not in old_names]
    assert [row["status"] for row in added] == ["failed"], added
    assert all(word in added[0]["error"] for word in words), added[0]["error"]
    assert all(added[0]["run_name"] in path for path in new if not path.endswith(("experiments.csv", ".lock"))), new
