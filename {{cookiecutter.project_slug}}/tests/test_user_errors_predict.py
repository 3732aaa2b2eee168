"""Mistakes a user makes with predict.py, as a table: each is one line (exit status 2), no traceback, no input
overwritten and nothing under LOG_DIR and WEIGHT_DIR changed. Every case starts from a copy of one trained run."""

import io
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from user_errors import check_nothing_lost, check_one_line, copy_run, snapshot, train_once, write_images

from config.paths import GlobalConfig

pytestmark = pytest.mark.slow


def edited_checkpoint(weights: Path, tmp: Path, key: str, value: object) -> None:
    """``tmp/edited.pt``: the run's best.pt with one key of its config changed."""
    checkpoint = torch.load(weights / "best.pt", weights_only=True)
    checkpoint["config"] = {**checkpoint["config"], key: value}
    torch.save(checkpoint, tmp / "edited.pt")


class Case(NamedTuple):
    """Arguments of predict.py (``{tmp}``: the test's folder, holding images/ with 3 images), the words of the error
    line, and what to prepare: ``(key, value)`` of the checkpoint's config to change, files to write."""

    args: tuple[str, ...]
    words: tuple[str, ...]
    edit: tuple[str, object] | None = None
    files: dict[str, bytes] | None = None


def torch_file(value: object) -> bytes:
    """The bytes of ``value`` saved with torch.save."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


NOT_OURS = torch_file({"weights": torch.zeros(1)})  # a PyTorch file, but not a checkpoint of this project
IN, OUT = ("-i", "{tmp}/images"), ("-o", "{tmp}/masks")
CASES = {
    "threshold 1.5": Case((*IN, *OUT, "--threshold", "1.5"), ("--threshold", "between 0 and 1")),
    "threshold nan": Case((*IN, *OUT, "--threshold", "nan"), ("--threshold",)),
    "tile not a multiple of the model's": Case((*IN, *OUT, "--tile", "30"), ("--tile 30", "multiple", "use 32")),
    "overlap 1": Case((*IN, *OUT, "--overlap", "1"), ("--overlap in [0, 1)",)),
    "no input": Case(("-i", "{tmp}/nothere", *OUT), ("no such file, folder or match",)),
    "no image in input": Case(("-i", "{tmp}/notes.txt", *OUT), ("no images",), files={"notes.txt": b"x"}),
    "no such weights": Case((*IN, *OUT, "--weights", "nothere.pt"), ("nothere.pt", "neither a checkpoint")),
    "random bytes": Case(
        (*IN, *OUT, "--weights", "{tmp}/x.pt"), ("not a PyTorch checkpoint",), files={"x.pt": b"\x07" * 300}
    ),
    "not a checkpoint of this project": Case(
        (*IN, *OUT, "--weights", "{tmp}/x.pt"), ("not a checkpoint of this project",), files={"x.pt": NOT_OURS}
    ),
    "model class gone": Case(
        (*IN, *OUT, "--weights", "{tmp}/edited.pt"), ("cannot rebuild its model",), ("MODEL", "nowhere.Model")
    ),
    "model config does not fit": Case(
        (*IN, *OUT, "--weights", "{tmp}/edited.pt"),
        ("cannot rebuild its model",),
        ("MODEL_CONFIG", {"in_channels": 1, "out_channels": 1, "base_channels": 8, "depth": 2}),
    ),
    "absent device": Case((*IN, *OUT, "--device", "cuda:99"), ("cuda",)),
    "-o a file": Case((*IN, "-o", "{tmp}/images/0.png"), ("is a file, not a folder",)),
    "-o under a file": Case((*IN, "-o", "{tmp}/images/0.png/masks"), ("cannot be created",)),
    "-o the input folder": Case((*IN, "-o", "{tmp}/images"), ("would overwrite the input",)),
    "two inputs, one mask name": Case(
        ("-i", "{tmp}/images", "{tmp}/0.png", *OUT), ("would both write 0.png",), files={"0.png": b""}
    ),
    "a label map and a probability map, one name": Case(
        ("-i", "{tmp}/images", "{tmp}/0_prob.tif", *OUT, "--probabilities"),
        ("would both write 0_prob.tif",),
        files={"0_prob.tif": b""},
    ),
}


@pytest.fixture(name="trained", scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run, trained once for the module; each case works on a copy of it."""
    return train_once(tmp_path_factory.mktemp("trained"))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_mistake_is_one_line_and_overwrites_nothing(
    case: Case,
    trained: Path,
    global_config: GlobalConfig,
    tmp_path: Path,
    run_script: Callable[..., subprocess.CompletedProcess],
) -> None:
    run = copy_run(trained, global_config.LOG_DIR, global_config.WEIGHT_DIR)
    write_images(tmp_path / "set", 3)
    (tmp_path / "set" / "images").rename(tmp_path / "images")
    for name, data in (case.files or {}).items():
        (tmp_path / name).write_bytes(data)
    if case.edit is not None:
        edited_checkpoint(global_config.WEIGHT_DIR / run, tmp_path, *case.edit)
    folders = (global_config.LOG_DIR, global_config.WEIGHT_DIR, tmp_path)
    before = snapshot(*folders)
    result = run_script("predict.py", *(arg.replace("{tmp}", str(tmp_path)) for arg in case.args))
    check_one_line(result, 2, case.words)
    check_nothing_lost(before, snapshot(*folders), global_config.LOG_DIR, False, case.words)
    assert "weights_only" not in result.stderr  # torch's advice to load a checkpoint unsafely is never passed on


def test_without_a_trained_run_predict_says_train_first(
    global_config: GlobalConfig, tmp_path: Path, run_script: Callable[..., subprocess.CompletedProcess]
) -> None:
    write_images(tmp_path, 1)
    result = run_script("predict.py", "-i", str(tmp_path / "images"), "-o", str(tmp_path / "out"))
    check_one_line(result, 2, ("no run with a best.pt", "train first"))
    assert not global_config.WEIGHT_DIR.exists() or not any(global_config.WEIGHT_DIR.iterdir())
    assert not (tmp_path / "out").exists()
