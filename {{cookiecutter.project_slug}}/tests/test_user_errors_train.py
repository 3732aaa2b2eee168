"""Mistakes a user makes with train.py, as a table: each is one line naming the problem (exit status 2), no
traceback, and nothing already under LOG_DIR and WEIGHT_DIR changed or left ``running`` (a failure after the run's
row exists leaves that run ``failed`` with the reason). Every case starts from a copy of one trained run."""

import functools
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from filelock import FileLock
from PIL import Image
from user_errors import (
    PROJECT_ROOT,
    TINY,
    check_nothing_lost,
    check_one_line,
    copy_run,
    experiment_rows,
    script,
    snapshot,
    train_once,
    write_images,
)

from config.paths import GlobalConfig

pytestmark = pytest.mark.slow

FOLDER = ("--set", "DATASET=utils.data.folder.SegmentationFolder", "--set", "DATASET_CONFIG={'root': '{tmp}/set'}")
WORKERS = ("--set", "DATA_LOADER_CONFIG.num_workers=2", "--set", "DATA_LOADER_CONFIG.batch_size=2")
# --nproc-per-node starts processes in the ignite routine; the others refuse it (both say so in one line).
IGNITE = ("--routine", "ignite") if (PROJECT_ROOT / "training" / "ignite_training.py").is_file() else ()
OWN_LOSS = "from config.train_config import TRAIN_CONFIG\ndef loss(a, b):\n    return (a - b).mean()\n"


class Case(NamedTuple):
    """Arguments of train.py after TINY (``{tmp}``: the test's folder, ``{run}``: the trained run), the words of the
    error line, files to write first, environment to set, and whether a failed run is recorded."""

    args: tuple[str, ...]
    words: tuple[str, ...]
    files: dict[str, str] | None = None
    env: dict[str, str] | None = None
    failed_run: bool = False
    setup: Callable[[Path, GlobalConfig, str], Any] | None = None


def hold_lock(_tmp: Path, global_config: GlobalConfig, run: str) -> FileLock:
    """Stand in for a process that still trains ``run``: hold its lock and name this process."""
    lock = FileLock(global_config.LOG_DIR / run / ".lock")
    lock.acquire()
    (global_config.LOG_DIR / run / ".lock.pid").write_text("4242\n", encoding="utf-8")
    return lock


def jpeg_masks(tmp: Path, *_: Any) -> None:
    """10 pairs in ``tmp``/set whose 0/255 masks are saved as JPEG (quality 75), as some tools export them."""
    for mask in sorted((write_images(tmp / "set", 10) / "masks").glob("*.png")):
        Image.open(mask).save(mask.with_suffix(".jpg"), quality=75)
        mask.unlink()


CASES = {
    "batch_size=0": Case(("--set", "DATA_LOADER_CONFIG.batch_size=0"), ("batch_size",)),
    "num_workers=-1": Case(("--set", "DATA_LOADER_CONFIG.num_workers=-1"), ("num_workers",)),
    "EPOCHS=0": Case(("--epochs", "0"), ("EPOCHS",)),
    "unknown key": Case(("--set", "EPOCH=3"), ("unknown key 'EPOCH'",)),
    "unknown kwarg": Case(("--set", "MODEL_CONFIG.foo=1"), ("MODEL_CONFIG", "foo")),
    "T_max=0": Case(("--set", "SCHEDULER_CONFIG.T_max=0"), ("T_max",)),
    "scheduler mode against the metric": Case(
        ("--set", "SCHEDULER=torch.optim.lr_scheduler.ReduceLROnPlateau", "--set", "SCHEDULER_CONFIG.mode='min'"),
        ("mode 'min' contradicts CHECKPOINT_METRIC 'val_dice'",),
    ),
    "compile mode": Case(("--set", "COMPILE={'mode': 'bogus'}"), ("COMPILE", "bogus")),
    "dotted name": Case(("--set", "MODEL=foo.Bar"), ("cannot import 'foo.Bar'",)),
    "absent device": Case(("--set", "DEVICE=cuda:99"), ("cuda",)),
    "metric not logged": Case(("--set", "CHECKPOINT_METRIC=val_foo"), ("val_foo", "not logged")),
    "metric never defined": Case(  # SyntheticShapes draws classes 1..3 only: e never occurs
        (
            *("--set", "TASK='multiclass'", "--set", "CLASSES=['a','b','c','d','e']"),
            *("--set", "MODEL_CONFIG.out_channels=5", "--set", "DATASET_CONFIG.num_classes=5"),
            *("--set", "CHECKPOINT_METRIC=val_dice_e"),
        ),
        ("CHECKPOINT_METRIC val_dice_e is never defined", "no pixel of e"),
    ),
    "bands": Case(("--set", "MODEL_CONFIG.in_channels=3"), ("sanity check 'bands'", "in_channels")),
    "class weights": Case(("--set", "LOSS_CONFIG={'class_weights': 'heavy'}"), ("class_weights", "finite numbers")),
    "IGNORE_INDEX a class": Case(
        ("--set", "TASK='multiclass'", "--set", "CLASSES=['a','b','c']", "--set", "IGNORE_INDEX=1"),
        ("IGNORE_INDEX 1 is the class 'b'",),
    ),
    "batches of one": Case(
        ("--set", "DATA_LOADER_CONFIG.batch_size=1", "--set", "MODEL_CONFIG.depth=3", "--set", "DATASET_CONFIG.size=8"),
        ("sanity check 'batch of one'", "batch_size >= 2"),
    ),
    "PATCH_FOREGROUND alone": Case(("--set", "PATCH_FOREGROUND=0.5"), ("PATCH_SIZE is None",)),
    "classes": Case(("--set", "TASK='multiclass'", "--set", "CLASSES=['a','b','c']"), ("out_channels=3",)),
    "mask values": Case(
        (*FOLDER, "--set", "TASK='multiclass'", "--set", "CLASSES=['a','b']", "--set", "MODEL_CONFIG.out_channels=2"),
        ("255", "MASK_VALUES"),
        setup=lambda tmp, *_: write_images(tmp / "set", 10),
    ),
    "JPEG masks": Case(FOLDER, ("0.jpg is JPEG, a lossy format", "PNG or TIFF", "MASK_THRESHOLD"), setup=jpeg_masks),
    "config: no file": Case(("--config", "{tmp}/nothere.py"), ("--config", "no such file")),
    "config: syntax": Case(("--config", "{tmp}/c.py"), ("--config", "line 1", "SyntaxError"), {"c.py": "X = {\n"}),
    "config: import": Case(("--config", "{tmp}/c.py"), ("line 1", "no_such_mod"), {"c.py": "import no_such_module\n"}),
    "config: a list": Case(("--config", "{tmp}/c.py"), ("TRAIN_CONFIG",), {"c.py": "TRAIN_CONFIG = []\n"}),
    "config: own function, --nproc-per-node": Case(
        ("--config", "{tmp}/c.py", *IGNITE, "--nproc-per-node", "2"),
        ("--nproc-per-node",),
        {"c.py": OWN_LOSS + "TRAIN_CONFIG = {**TRAIN_CONFIG, 'LOSS': loss}\n"},
    ),
    "dataset folder": Case(FOLDER, ("dataset folder not found",)),
    "truncated image, first batch": Case(
        (*FOLDER, *WORKERS), ("truncated", "5.png"), setup=lambda tmp, *_: write_images(tmp / "set", 10, 5)
    ),
    "truncated image, in an epoch": Case(
        (*FOLDER, *WORKERS, "--set", "NORMALIZATION=None"),  # with statistics, it fails before the run starts
        ("truncated", "9.png"),
        failed_run=True,
        setup=lambda tmp, *_: write_images(tmp / "set", 10, 9),
    ),
    "loss not finite": Case(
        ("--set", "OPTIMIZER=torch.optim.SGD", "--set", "OPTIMIZER_CONFIG={'lr': 1e20}", "--epochs", "2"),
        ("loss is", "at epoch"),
        failed_run=True,
    ),
    "LOG_DIR a file": Case((), ("LOG_DIR", "is a file, not a folder"), {"file": ""}, {"LOG_DIR": "{tmp}/file"}),
    "WEIGHT_DIR a file": Case((), ("WEIGHT_DIR", "is a file"), {"file": ""}, {"WEIGHT_DIR": "{tmp}/file"}),
    "WEIGHT_DIR under a file": Case((), ("WEIGHT_DIR", "cannot be created"), {"f": ""}, {"WEIGHT_DIR": "{tmp}/f/w"}),
    "resume: no such run": Case(("--resume", "no_such_run"), ("no_such_run", "neither a checkpoint")),
    "resume: random bytes": Case(
        ("--resume", "{tmp}/x.pt"), ("cannot read checkpoint", "not a PyTorch checkpoint"), {"x.pt": "\x07" * 300}
    ),
    "resume: other config": Case(("--resume", "latest", "--set", "OPTIMIZER_CONFIG.lr=0.5"), ("differs", "lr")),
    "resume: still training": Case(
        ("--resume", "{run}"), ("being trained by another process (pid 4242)",), setup=hold_lock
    ),
}


@pytest.fixture(name="trained", scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run, trained once for the module; each case works on a copy of it."""
    return train_once(tmp_path_factory.mktemp("trained"))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_mistake_is_one_line_and_loses_nothing(
    case: Case,
    trained: Path,
    global_config: GlobalConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_script: Callable[..., subprocess.CompletedProcess],
) -> None:
    run = copy_run(trained, global_config.LOG_DIR, global_config.WEIGHT_DIR)
    for name, text in (case.files or {}).items():
        (tmp_path / name).write_text(text, encoding="latin-1")
    for name, value in (case.env or {}).items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    held = case.setup(tmp_path, global_config, run) if case.setup else None
    folders = (global_config.LOG_DIR, global_config.WEIGHT_DIR)
    before = snapshot(*folders)
    args = (arg.replace("{tmp}", str(tmp_path)).replace("{run}", run) for arg in case.args)
    result = run_script("train.py", *TINY, *args)
    check_one_line(result, 2, case.words)
    check_nothing_lost(before, snapshot(*folders), global_config.LOG_DIR, case.failed_run, case.words)
    assert "weights_only" not in result.stderr  # torch's advice to load a checkpoint unsafely is never passed on
    if isinstance(held, FileLock):
        held.release()


def _files_stop_at(size: int) -> None:
    """In the child: a file cannot grow past ``size`` bytes (EFBIG), as on a full disk, rather than SIGXFSZ killing
    it (a real full disk needs a small file system of its own: mounting one needs root)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_disk_that_fills_up_is_one_line_and_leaves_the_run_failed(trained: Path, global_config: GlobalConfig) -> None:
    copy_run(trained, global_config.LOG_DIR, global_config.WEIGHT_DIR)
    folders = (global_config.LOG_DIR, global_config.WEIGHT_DIR)
    before = snapshot(*folders)
    result = subprocess.run(  # a checkpoint (and TensorBoard's graph) is bigger than 40 KiB; the logs are not
        [sys.executable, "train.py", *TINY, "--set", "MODEL_CONFIG.base_channels=8"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=functools.partial(_files_stop_at, 40 * 1024),  # pylint: disable=subprocess-popen-preexec-fn  # no threads started yet
    )
    check_one_line(result, 2, ("File too large", "free space"))
    check_nothing_lost(before, snapshot(*folders), global_config.LOG_DIR, True, ("File too large",))


def test_a_full_disk_while_saving_weights_keeps_the_last_checkpoint(global_config: GlobalConfig) -> None:
    """torch's zip writer reports a failed write as "RuntimeError ... unexpected pos": one line instead, naming the
    file; the resumed run is failed, its epoch 1 checkpoints are whole and no temporary file is left."""
    bigger = (*TINY, "--set", "MODEL_CONFIG.base_channels=16")  # checkpoints of 2 MiB; the logs stay under 1 MiB
    assert script("train.py", *bigger).returncode == 0
    (run_dir,) = global_config.WEIGHT_DIR.iterdir()
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    result = subprocess.run(
        [sys.executable, "train.py", *bigger, "--epochs", "2", "--resume", "latest"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=functools.partial(_files_stop_at, 1 << 20),  # pylint: disable=subprocess-popen-preexec-fn
    )
    check_one_line(result, 2, ("File too large", str(run_dir / "last.pt"), "free space"))
    assert sorted(before) == ["best.pt", "last.pt"]
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before
    (row,) = experiment_rows(global_config.LOG_DIR)
    assert row["status"] == "failed" and "File too large" in row["error"] and "last.pt" in row["error"], row


TORCHRUN = {
    "resume: no such run": ((), ("--resume", "no_such_run"), ("no_such_run", "neither a checkpoint")),
    "LOG_DIR a file": ({"LOG_DIR": "{tmp}/file"}, (), ("LOG_DIR", "is a file, not a folder")),
    "a validation sample for 2 processes": ({}, ("--set", "VAL_FRACTION=0.05"), ("validation set 1;", "validation 2")),
}


@pytest.mark.parametrize(("env", "args", "words"), TORCHRUN.values(), ids=TORCHRUN.keys())
def test_under_torchrun_every_rank_ends_with_the_same_line(
    env: dict[str, str],
    args: tuple[str, ...],
    words: tuple[str, ...],
    global_config: GlobalConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_script: Callable[..., subprocess.CompletedProcess],
) -> None:
    """An error that rank 0 meets before a collective reaches rank 1 too, instead of gloo's "Connection closed"."""
    (tmp_path / "file").write_text("", encoding="utf-8")
    for name, value in dict(env).items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    result = run_script(*torchrun, "train.py", *TINY, *args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and errors[0] == errors[1], result.stderr  # one line from each rank, the same
    assert all(word in errors[0] for word in words), errors[0]
    assert "Connection closed" not in result.stderr and "[rank" not in result.stderr, result.stderr
    assert [row for row in experiment_rows(global_config.LOG_DIR) if row["status"] == "running"] == []


def test_a_run_interrupted_before_its_first_epoch_says_there_is_nothing_to_continue(
    global_config: GlobalConfig,
) -> None:
    """Ctrl-C once the run's row exists but before an epoch ended: no "continue it with --resume" promise."""
    bigger = ("--set", "DATASET_CONFIG.n_samples=2000", "--set", "DATASET_CONFIG.size=64")
    command = [sys.executable, "train.py", *TINY, *bigger]
    with subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 120
        while not experiment_rows(global_config.LOG_DIR) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "nothing to continue" in stderr and "--resume" not in stderr and "Traceback" not in stderr, stderr
    assert [row["status"] for row in experiment_rows(global_config.LOG_DIR)] == ["interrupted"]
