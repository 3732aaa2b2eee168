"""Everything the training routines share: builders, checks, the RunRecorder that writes a run, and the Run.

A routine file (``training/<name>_training.py``) only does what its framework does differently. The steps here are
the same for all of them, so that the three routines take the same config and leave the same files.
"""

import importlib
import importlib.metadata
import io
import json
import logging
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, random_split

from config.config import ROOT_PATH, GlobalConfig
from config.device import get_device
from training.distributed import (
    broadcast_buffers,
    broadcast_object,
    check_distributed_config,
    init_distributed,
    rank_and_world_size,
    sum_over_ranks,
)
from training.schema import ConfigError, to_jsonable, validate_config
from utils.data.datasets import DataError
from utils.logging.csv import append_history, flatten, read_experiments, upsert_experiment
from utils.logging.plot import plot_history
from utils.name import make_run_name
from utils.path import create_unique_dir, latest_run_dir
from utils.torchutils import (
    CheckpointError,
    backprop,
    check_finite,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    set_seed,
)

LOGGER = logging.getLogger("project")
CHECKPOINT_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------------------


def instantiate(config: dict[str, Any], key: str, *args: Any) -> Any:
    """``config[key](*args, **config[key + "_CONFIG"])``; arguments the class refuses are a ConfigError naming the key.

    A wrong keyword or value in a ``*_CONFIG`` dict (``--set OPTIMIZER_CONFIG.betas=3``) is the user's to fix: one
    line that says where, rather than a traceback from inside torch.
    """
    factory, kwargs = config[key], config[f"{key}_CONFIG"]
    try:
        return factory(*args, **kwargs)
    except (ConfigError, DataError):  # already say what is wrong
        raise
    except (TypeError, ValueError) as err:
        name = getattr(factory, "__qualname__", repr(factory))
        raise ConfigError(f"{key}={name} does not take {key}_CONFIG={kwargs!r}: {err}") from err


class _Transformed(Dataset):
    """Applies a paired transform to another dataset's samples (used for training augmentation only)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.dataset[index])


def build_datasets(config: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """Training and validation datasets: VAL_DATASET if given, else a seeded VAL_FRACTION split of DATASET."""
    dataset = instantiate(config, "DATASET")
    if config["VAL_DATASET"] is not None:
        train_set, val_set = dataset, instantiate(config, "VAL_DATASET")
    else:
        n_val = round(len(dataset) * config["VAL_FRACTION"])
        if not 0 < n_val < len(dataset):
            raise ConfigError(
                f"VAL_FRACTION={config['VAL_FRACTION']} of {len(dataset)} samples leaves an empty "
                "training or validation set"
            )
        generator = torch.Generator().manual_seed(config["SEED"])
        train_set, val_set = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    if config["TRAIN_TRANSFORM"] is not None:
        train_set = _Transformed(train_set, config["TRAIN_TRANSFORM"])
    return train_set, val_set


def build_loaders(
    config: dict[str, Any], device: torch.device, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, DataLoader]:
    """DataLoaders over :func:`build_datasets`; call :func:`set_epoch` before each training epoch.

    With several processes, each loads its own shard, in batches of DATA_LOADER_CONFIG's batch_size (per process:
    a step trains on world_size * batch_size samples). The training shards are padded to equal length, as DDP needs
    the same number of steps on every rank; the validation shards are not, so that no sample counts twice.
    """
    train_set, val_set = build_datasets(config)
    kwargs = {"pin_memory": device.type == "cuda", **config["DATA_LOADER_CONFIG"]}
    if world_size == 1:
        train_loader = DataLoader(train_set, shuffle=True, generator=torch.Generator(), **kwargs)
    else:
        sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True)
        train_loader = DataLoader(train_set, sampler=sampler, generator=torch.Generator(), **kwargs)
        val_set = Subset(val_set, range(rank, len(val_set), world_size))  # type: ignore[arg-type]
    val_loader = DataLoader(val_set, shuffle=False, **kwargs)
    return train_loader, val_loader


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch``'s training order: (SEED, epoch) alone, whichever generator draws it."""
    return seed * 100_003 + epoch


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Seed the training order of ``epoch`` with (SEED, epoch) alone.

    The batches of an epoch then do not depend on the epochs before it, so a resumed run sees the same batches as
    an uninterrupted one, and worker processes (seeded from the same generator) draw the same augmentations.
    """
    # A new generator rather than a reseeded one: an iterator that a framework keeps from the previous epoch
    # (Ignite draws once more from it to see it end) then cannot take a draw from this epoch's sequence.
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    loader.generator = generator
    if isinstance(loader.sampler, torch.utils.data.RandomSampler):
        loader.sampler.generator = generator
    elif isinstance(loader.sampler, DistributedSampler):
        # It permutes with a generator seeded its seed + epoch: the same permutation as one process draws, which the
        # ranks then deal out in turn (a step of all ranks trains on the samples of one process's larger batch).
        loader.sampler.seed = epoch_seed(seed, 0)
        loader.sampler.set_epoch(epoch)


def build_model(config: dict[str, Any], device: torch.device) -> nn.Module:
    """MODEL(**MODEL_CONFIG) on ``device``, in channels-last memory format if CHANNELS_LAST (not compiled yet)."""
    return instantiate(config, "MODEL").to(device, memory_format=memory_format(config))


def memory_format(config: dict[str, Any]) -> torch.memory_format:
    """The memory format of the model's weights and of image batches: channels-last if CHANNELS_LAST."""
    return torch.channels_last if config["CHANNELS_LAST"] else torch.preserve_format


def compile_model(config: dict[str, Any], model: nn.Module) -> None:
    """COMPILE: compile the model's forward in place with torch.compile (True: its defaults; a dict: its kwargs).

    In place (``nn.Module.compile``) rather than ``torch.compile(model)``: the model stays the same object, so every
    framework gets it as it is, and its state_dict keeps its plain keys (no ``_orig_mod.``) for checkpoints.
    """
    if config["COMPILE"] is not False:
        model.compile(**(config["COMPILE"] if isinstance(config["COMPILE"], dict) else {}))


def build_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """OPTIMIZER over the model's parameters."""
    return instantiate(config, "OPTIMIZER", model.parameters())


def build_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """The learning-rate schedule: OneCycleLR for ONE_CYCLE (stepped every batch), else SCHEDULER, or None."""
    if config["ONE_CYCLE"] is not None:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, total_steps=config["EPOCHS"] * steps_per_epoch, **config["ONE_CYCLE"]
        )
    if config["SCHEDULER"] is None:
        return None
    return instantiate(config, "SCHEDULER", optimizer)


def build_loss(config: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LOSS as a callable: a function as is, an nn.Module class instantiated without arguments."""
    loss = config["LOSS"]
    return loss() if isinstance(loss, type) else loss


def autocast_dtype(config: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype for MIXED_PRECISION on ``device`` (None: full precision)."""
    setting = config["MIXED_PRECISION"]
    if setting is False:
        return None
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError(f"MIXED_PRECISION='fp16' needs a CUDA device (this run uses {device}); use 'bf16'")
    if setting == "fp16" or (setting is True and device.type == "cuda"):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast context for the forward pass (disabled when ``dtype`` is None)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler, active only for fp16 (bf16 has the range of fp32 and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


# ---------------------------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------------------------


def find_checkpoint(resume: str | Path, global_config: GlobalConfig) -> Path:
    """``latest``, a run name or a checkpoint path -> the checkpoint file to resume from."""
    if str(resume) == "latest":
        run = latest_run_dir(global_config.WEIGHT_DIR, "last.pt")
        if run is None:
            raise CheckpointError(f"--resume latest: no run with a last.pt in {global_config.WEIGHT_DIR}")
        return run / "last.pt"
    path = Path(resume)
    if path.is_file():
        return path
    run_checkpoint = global_config.WEIGHT_DIR / str(resume) / "last.pt"
    if run_checkpoint.is_file():
        return run_checkpoint
    raise CheckpointError(f"--resume {resume}: neither a checkpoint file nor a run with {run_checkpoint}")


def load_for_resume(resume: str | Path, global_config: GlobalConfig, routine: str) -> dict[str, Any]:
    """Load the checkpoint to resume and check that this routine wrote it."""
    checkpoint = load_checkpoint(find_checkpoint(resume, global_config))
    if checkpoint["routine"] != routine:
        raise ConfigError(
            f"run {checkpoint['run_name']} was trained by the {checkpoint['routine']!r} routine; "
            f"resume it with --routine {checkpoint['routine']}"
        )
    return checkpoint


# What a resumed run may change; any other difference would silently make it another experiment.
RESUMABLE_CHANGES = ("EPOCHS", "DEVICE", "NOTIFY", "COMMENT", "LOGFILE")


def check_resume_config(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse to resume a run with a config that differs from its own, other than in RESUMABLE_CHANGES."""
    before, now = flatten(checkpoint["config"]), flatten(to_jsonable(config))
    changed = sorted(
        key
        for key in before.keys() | now.keys()
        if key.split(".")[0] not in RESUMABLE_CHANGES and before.get(key) != now.get(key)
    )
    if changed:
        differences = ", ".join(f"{key} (run: {before.get(key)!r}, now: {now.get(key)!r})" for key in changed[:4])
        raise ConfigError(
            f"--resume {checkpoint['run_name']}: the config differs from the run's in {differences}"
            f"{' and more' if len(changed) > 4 else ''}; resume with the run's --config and --set options "
            f"(see its config.json); only {', '.join(RESUMABLE_CHANGES)} may change"
        )


def resume_command(routine: str, run_name: str) -> str:
    """The command that continues ``run_name``: this process's train.py options, with --resume."""
    args, options = sys.argv[1:] if Path(sys.argv[0]).name == "train.py" else [], []
    skip = False
    for arg in args:  # drop the options that the command sets itself
        if skip or arg.startswith(("--resume=", "--routine=")):
            skip = False
            continue
        skip = arg in ("--resume", "--routine")
        if not skip:
            options.append(arg)
    return shlex.join(["python", "train.py", "--routine", routine, *options, "--resume", run_name])


def restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> None:
    """Put the states of a checkpoint back into freshly built training objects."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"])


# ---------------------------------------------------------------------------------------------------------------------
# Recording a run
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a routine returns: where the run's files are and how it went."""

    run_name: str
    status: str
    run_dir: Path
    weight_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class RunPruned(Exception):  # noqa: N818  # a stop that the caller asked for, not an error
    """A run stopped by its caller after an epoch, as a search prunes an unpromising trial; recorded as ``pruned``."""


@dataclass
class RunHooks:
    """How a caller that starts runs itself (hyperparameter.py's search) takes part in them.

    Args:
        row: extra columns of the run's row in experiments.csv (the search's study and trial number).
        on_epoch: called with the epoch and its validation values once the epoch is recorded and checkpointed;
            it may raise :class:`RunPruned` to stop the run there.
    """

    row: dict[str, Any] = field(default_factory=dict)
    on_epoch: Callable[[int, dict[str, float]], None] | None = None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT_PATH, capture_output=True, text=True, timeout=10, check=True).stdout


def _git_state() -> tuple[str, str, str]:
    """(commit, dirty, diff against HEAD) of the project's git checkout, or empty strings outside one."""
    try:
        commit, status = _git("rev-parse", "HEAD").strip(), _git("status", "--porcelain")
        diff = _git("diff", "HEAD") if status.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return "", "", ""
    return commit, str(bool(status.strip())), diff


def _versions(routine: str) -> dict[str, str]:
    """Python, torch and the routine's framework versions, so that a result can be reproduced later."""
    versions = {"python_version": platform.python_version(), "torch_version": torch.__version__}
    package = {"ignite": "pytorch-ignite", "fastai": "fastai"}.get(routine, "torch")  # the raw routine: torch alone
    versions["framework_version"] = f"{package} {importlib.metadata.version(package)}"
    return versions


class RunRecorder:
    """Writes everything a run leaves, the same way for every routine.

    ``logs/<run>/config.json``, ``history.csv``, ``curves.png``, ``train.log`` and ``tensorboard/``,
    ``weights/<run>/last.pt`` and ``best.pt``, and the run's row in ``logs/experiments.csv``.
    A routine calls :meth:`record_epoch` after each validation, :meth:`save` with its checkpoint, and
    :meth:`finish` once, whatever the outcome.
    """

    # Drawing curves.png takes matplotlib 0.1 to 0.2 s. It is redrawn after an epoch only while drawing takes at most
    # this share of the run's time: after every epoch when epochs are long, less often when they are short. finish()
    # draws the last epochs of every run, completed, failed or interrupted.
    CURVES_SHARE = 0.05

    def __init__(
        self,
        config: dict[str, Any],
        global_config: GlobalConfig,
        routine: str,
        device: torch.device,
        checkpoint: dict[str, Any] | None = None,
        world_size: int = 1,
        extra_row: Mapping[str, Any] | None = None,
    ) -> None:
        self.config, self.routine, self.device, self.world_size = config, routine, device, world_size
        self.extra_row = dict(extra_row or {})  # columns that the caller adds to the run's experiments.csv row
        self.metric, self.mode = config["CHECKPOINT_METRIC"], config["CHECKPOINT_MODE"]
        min_delta = (config["EARLY_STOPPING"] or {}).get("min_delta", 0.0)
        self.min_delta = float(min_delta)
        self.started_at = datetime.now()
        self.history: list[dict[str, float]] = []
        # epochs in curves.png, seconds spent drawing it, and what one drawing takes (a guess until the first)
        self._curves_epochs, self._curves_seconds, self._curves_cost = 0, 0.0, 0.2
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        if checkpoint is None:
            self.run_dir = create_unique_dir(
                global_config.LOG_DIR, make_run_name(config["SESSION_NAME"], routine, self.started_at)
            )
            self.run_name = self.run_dir.name
        else:
            self.run_name = checkpoint["run_name"]
            self.run_dir = global_config.run_log_dir(self.run_name)
            self.best_value, self.best_epoch = checkpoint["best"]["value"], checkpoint["best"]["epoch"]
            self._reload_history(int(checkpoint["epoch"]))
        self.weight_dir = global_config.run_weight_dir(self.run_name)
        self.experiments_csv = global_config.LOG_DIR / "experiments.csv"
        self.history_csv = self.run_dir / "history.csv"
        self._earlier_seconds = 0.0  # the training time of the sessions before a resume
        if checkpoint is not None:
            self._continue_experiment_row()
        self.jsonable_config = to_jsonable(config)
        (self.run_dir / "config.json").write_text(
            json.dumps({"run_name": self.run_name, "routine": routine, "config": self.jsonable_config}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        self._log_handler: logging.Handler | None = None
        if config["LOGFILE"]:
            self._log_handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
            self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            LOGGER.addHandler(self._log_handler)
            if LOGGER.level == logging.NOTSET:
                LOGGER.setLevel(logging.INFO)
        self.tensorboard = self._open_tensorboard() if config["TENSORBOARD"] else None
        self.git_commit, self.git_dirty, diff = _git_state()
        if diff:  # the code as it ran, when it differs from the commit
            (self.run_dir / "git.diff").write_text(diff, encoding="utf-8")
        self._clock = time.perf_counter()
        self._write_experiment("running")
        LOGGER.info("run %s (%s routine) on %s: logs in %s", self.run_name, routine, device, self.run_dir)

    def _continue_experiment_row(self) -> None:
        """On resume, keep the run's start time and add to its duration rather than restart them."""
        rows = read_experiments(self.experiments_csv)
        rows = rows[rows["run_name"] == self.run_name]
        if rows.empty:
            return
        row = rows.iloc[0]
        self.started_at = datetime.fromisoformat(str(row["started_at"]))
        if "duration_s" in row and pd.notna(row["duration_s"]):
            self._earlier_seconds = float(row["duration_s"])

    def _open_tensorboard(self) -> Any:
        try:
            from utils.logging.tensorboard import TensorBoardLogger  # pylint: disable=import-outside-toplevel
        except ImportError as err:
            raise ConfigError(
                f"TENSORBOARD=True but TensorBoard is not available in this project ({err}); set TENSORBOARD to False"
            ) from err
        return TensorBoardLogger(self.run_dir / "tensorboard")

    def _reload_history(self, last_epoch: int) -> None:
        """On resume, keep history rows up to the checkpoint's epoch; later ones are redone."""
        path = self.run_dir / "history.csv"
        if not path.is_file():
            return
        rows = pd.read_csv(path).to_dict("records")
        self.history = [row for row in rows if row["epoch"] <= last_epoch]
        path.unlink()
        for row in self.history:
            append_history(path, row)

    @property
    def start_epoch(self) -> int:
        """The first epoch still to train (1-based)."""
        return len(self.history) + 1

    def is_better(self, value: float) -> bool:
        """Whether ``value`` of the checkpoint metric beats the best so far by more than min_delta."""
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def record_epoch(self, epoch: int, train_loss: float, val: dict[str, float], lr: float, seconds: float) -> bool:
        """Log one epoch (history.csv, TensorBoard, curves.png, the log) and return whether it is the best."""
        row = {"epoch": epoch, "train_loss": train_loss, **val, "lr": lr, "seconds": round(seconds, 3)}
        self.history.append(row)
        append_history(self.history_csv, row)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(row)
        elapsed = time.perf_counter() - self._clock
        if self._curves_seconds + self._curves_cost <= self.CURVES_SHARE * elapsed:
            self.draw_curves()
        improved = self.is_better(val[self.metric])
        if improved:
            self.best_value, self.best_epoch = val[self.metric], epoch
        values = "  ".join(f"{key} {value:.4f}" for key, value in row.items() if key not in ("epoch", "seconds"))
        LOGGER.info(
            "epoch %d/%d  %s  %.1fs%s", epoch, self.config["EPOCHS"], values, seconds, "  (best)" if improved else ""
        )
        return improved

    def draw_curves(self) -> None:
        """Draw curves.png from history.csv, unless it already shows every recorded epoch."""
        if not self.history or self._curves_epochs == len(self.history):
            return
        start = time.perf_counter()
        plot_history(self.history_csv, self.run_dir / "curves.png")
        self._curves_cost = time.perf_counter() - start
        self._curves_epochs, self._curves_seconds = len(self.history), self._curves_seconds + self._curves_cost

    def should_stop(self) -> bool:
        """Early stopping: no improvement of the checkpoint metric for ``patience`` epochs."""
        early = self.config["EARLY_STOPPING"]
        if not early or self.best_epoch is None:
            return False
        stop = len(self.history) - self.best_epoch >= early["patience"]
        if stop:
            LOGGER.info("early stopping: %s has not improved for %d epochs", self.metric, early["patience"])
        return stop

    def checkpoint(
        self,
        epoch: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, Any]:
        """The one checkpoint format of every routine (readable with ``torch.load(weights_only=True)``)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best": {"metric": self.metric, "mode": self.mode, "value": self.best_value, "epoch": self.best_epoch},
            "config": self.jsonable_config,
            "routine": self.routine,
            "run_name": self.run_name,
            "rng": get_rng_state(),
        }

    def save(self, checkpoint: dict[str, Any], is_best: bool) -> None:
        """Write last.pt, and best.pt when the epoch is the best so far (both atomically)."""
        save_checkpoint(checkpoint, self.weight_dir / "last.pt")
        if is_best:
            save_checkpoint(checkpoint, self.weight_dir / "best.pt")

    def finish(self, status: str, error: BaseException | None = None) -> RunResult:
        """Write the run's final row in experiments.csv, close the logs, and return the RunResult."""
        best = next((row for row in self.history if row["epoch"] == self.best_epoch), {})
        final = self.history[-1] if self.history else {}
        result = RunResult(
            run_name=self.run_name,
            status=status,
            run_dir=self.run_dir,
            weight_dir=self.weight_dir,
            epochs_completed=len(self.history),
            best_epoch=self.best_epoch,
            best={k: v for k, v in best.items() if k.startswith(("val_", "train_"))},
            final={k: v for k, v in final.items() if k.startswith(("val_", "train_"))},
            # One line, whatever the framework made of the message (fastai adds its own lines around it).
            error=None if error is None else " ".join(f"{type(error).__name__}: {error}".split()),
        )
        try:
            self.draw_curves()
        except Exception as err:  # pylint: disable=broad-exception-caught  # a plot must not cost the run's row
            LOGGER.warning("run %s: curves.png not drawn: %s", self.run_name, err)
        self._write_experiment(status, result)
        if status == "interrupted":
            LOGGER.warning(
                "run %s interrupted after %d epoch(s); continue it with: %s",
                self.run_name,
                len(self.history),
                resume_command(self.routine, self.run_name),
            )
        elif status != "completed":
            LOGGER.warning("run %s %s: %s", self.run_name, status, result.error)
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.config["NOTIFY"]:  # after the records, so that the message sees the finished files; never raises
            smtp = importlib.import_module("utils.notify.smtp")  # only in projects generated with e-mail
            details = {"session": self.config["SESSION_NAME"], "routine": self.routine, "device": str(self.device)}
            resume = resume_command(self.routine, self.run_name)
            smtp.notify_run(
                self.config["NOTIFY"], result, self.history, metric=self.metric, details=details, resume=resume
            )
        if self._log_handler is not None:
            LOGGER.removeHandler(self._log_handler)
            self._log_handler.close()
        return result

    def _write_experiment(self, status: str, result: RunResult | None = None) -> None:
        finished = datetime.now() if result is not None else None
        row: dict[str, Any] = {
            "run_name": self.run_name,
            "session_name": self.config["SESSION_NAME"],
            "routine": self.routine,
            "status": status,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds") if finished else None,
            "duration_s": round(self._earlier_seconds + time.perf_counter() - self._clock, 1) if finished else None,
            "epochs_completed": len(self.history),
            "best_epoch": self.best_epoch,
        }
        if result is not None:
            row.update({f"best_{key}": value for key, value in result.best.items()})
            row.update({f"final_{key}": value for key, value in result.final.items()})
        row.update(
            {
                "git_commit": self.git_commit,
                "git_dirty": self.git_dirty,
                "device": str(self.device),
                "world_size": self.world_size,
                "run_dir": str(self.run_dir),
                **_versions(self.routine),
                **self.extra_row,
            }
        )
        row.update(flatten(self.jsonable_config))
        if result is not None and result.error:
            row["error"] = result.error
        upsert_experiment(self.experiments_csv, row)


# ---------------------------------------------------------------------------------------------------------------------
# Checks before the first epoch
# ---------------------------------------------------------------------------------------------------------------------


class PreflightError(RuntimeError):
    """A check on the first batch failed before training started; the message names the check."""


def preflight_checks(
    config: dict[str, Any],
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    loss_fn: Callable,
    device: torch.device,
) -> None:
    """One batch through the model: output shape against the mask, a finite loss, and a save/load round trip
    that gives identical outputs. Runs in eval mode and on a forked RNG, so training is exactly as without it.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            logits = model(images)
            if logits.shape != masks.shape:
                raise PreflightError(
                    f"preflight check 'output shape' failed: the model gives {tuple(logits.shape)} for masks of "
                    f"{tuple(masks.shape)}; make MODEL_CONFIG's output channels match the masks"
                )
            loss = loss_fn(logits.float(), masks)
            if not torch.isfinite(loss).all():
                raise PreflightError(f"preflight check 'finite loss' failed: the first batch's loss is {loss}")
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            buffer.seek(0)
            reloaded = build_model(config, device).eval()
            reloaded.load_state_dict(torch.load(buffer, weights_only=True))
            if not torch.equal(reloaded(images), logits):
                raise PreflightError(
                    "preflight check 'save/load round trip' failed: the reloaded model gives other outputs "
                    "(is some state kept outside the model's parameters and buffers?)"
                )
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------------------------
# Signals: Ctrl-C and SIGTERM stop a run cleanly
# ---------------------------------------------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's or a container's stop) reached a run; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """Turns SIGINT and SIGTERM into :class:`Interrupted`, held back while an epoch is being recorded.

    An epoch's history row and its checkpoint are written as a unit: a signal that arrives in between is raised
    once both are on disk, so an interrupted run's last recorded epoch always has its checkpoint.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.holding, self.pending = False, 0

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.holding:
            self.pending = signum
        else:
            raise Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals inside the block (Python lets only the main thread set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold signals back for the block, then raise the one that came meanwhile."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            signum, self.pending = self.pending, 0
            raise Interrupted(signum)


# ---------------------------------------------------------------------------------------------------------------------
# A run: what every routine builds, resumes, steps and records the same way
# ---------------------------------------------------------------------------------------------------------------------


class Run:
    """Everything a training loop needs, built from the config the same way for every routine.

    A routine creates a Run (build, resume and preflight checks), then loops in its framework's own way, calling
    :meth:`begin_epoch`, :meth:`train_step` (or its framework's step), and :meth:`end_epoch` after validation, all
    inside ``with run.guard():``, and returns :meth:`finish`.

    Args:
        refused: config keys the routine cannot honour, with the reason; setting one is a ConfigError.
        framework_schedule: the framework runs ONE_CYCLE itself (fastai's fit_one_cycle): build no OneCycleLR.
        framework_ddp: the framework wraps the model in DDP itself (fastai's distrib_ctx): ``train_model`` stays the
            bare model.
        hooks: what a caller that starts runs itself (the hyperparameter search) adds to this run.
    """

    def __init__(
        self,
        config: dict[str, Any],
        global_config: GlobalConfig,
        routine: str,
        resume: str | Path | None = None,
        refused: Mapping[str, str] | None = None,
        framework_schedule: bool = False,
        framework_ddp: bool = False,
        hooks: RunHooks | None = None,
    ) -> None:
        self.hooks = hooks or RunHooks()
        # build
        self.config = config = validate_config(config, refused)
        set_seed(config["SEED"])  # the same on every rank: DDP starts from rank 0's weights anyway
        self.device = init_distributed(get_device(config["DEVICE"]))
        self.rank, self.world_size = rank_and_world_size()
        check_distributed_config(config, self.world_size)
        self.dtype = autocast_dtype(config, self.device)
        self.memory_format = memory_format(config)
        self.train_loader, self.val_loader = build_loaders(config, self.device, self.rank, self.world_size)
        self.model = build_model(config, self.device)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = None
        if not (framework_schedule and config["ONE_CYCLE"] is not None):
            self.scheduler = build_scheduler(config, self.optimizer, len(self.train_loader))
        self.scaler = grad_scaler(self.device, self.dtype)
        self.loss_fn = build_loss(config)
        self.metrics: dict[str, Callable] = config["METRICS"]
        with torch.random.fork_rng():  # the batches taken for checks and images must not shift training's RNG
            images, masks = next(iter(self.train_loader))
            self.val_images, self.val_masks = self.to_device(*(t[:4] for t in next(iter(self.val_loader))))
        images, masks = self.to_device(images, masks)
        preflight_checks(config, self.model, images, masks, self.loss_fn, self.device)
        # resume: rank 0 reads the checkpoint and sends it to the others (other nodes may not see its disk)
        checkpoint = None
        if resume is not None:
            checkpoint = broadcast_object(load_for_resume(resume, global_config, routine) if self.rank == 0 else None)
            check_resume_config(checkpoint, config)
            restore(checkpoint, self.model, self.optimizer, self.scheduler, self.scaler)
        # Training steps go through DDP, which averages the gradients over the ranks; ``model`` stays the bare
        # module, which checkpoints, predictions and TensorBoard use (so checkpoints are the same as in one process).
        self.train_model: nn.Module = self.model
        if self.world_size > 1 and not framework_ddp:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self._signals = _StopSignals()
        # Rank 0 alone writes the run's files and sends its e-mail; the other ranks have no recorder.
        self.recorder: RunRecorder | None = None
        if self.rank == 0:
            self.recorder = RunRecorder(
                config, global_config, routine, self.device, checkpoint, self.world_size, extra_row=self.hooks.row
            )
        self.tensorboard = self.recorder.tensorboard if self.recorder is not None else None
        self.start_epoch: int = broadcast_object(self.recorder.start_epoch if self.recorder is not None else None)
        if self.tensorboard is not None and checkpoint is None:
            with self.guard(), torch.random.fork_rng():  # the run's row exists now: record a failure here too
                self.tensorboard.log_inputs(images, masks)
                self.tensorboard.log_graph(self.model, images[:1])
        # Compiled last: the checks above and the graph are taken from the plain model, in eager mode.
        compile_model(config, self.model)
        self.step = (self.start_epoch - 1) * len(self.train_loader)
        self._epoch_started, self._epoch_lr = 0.0, 0.0

    @property
    def scheduler_per_step(self) -> bool:
        """Whether the scheduler steps every batch (one-cycle) rather than every epoch."""
        return isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)

    def epochs(self) -> Iterator[int]:
        """The epochs still to train, each begun with :meth:`begin_epoch`."""
        for epoch in range(self.start_epoch, self.config["EPOCHS"] + 1):
            self.begin_epoch(epoch)
            yield epoch

    def begin_epoch(self, epoch: int) -> None:
        """Seed the epoch's batch order and start its clock."""
        set_epoch(self.train_loader, self.config["SEED"], epoch)
        self._epoch_started, self._epoch_lr = time.perf_counter(), current_lr(self.optimizer)

    def set_lr(self, lr: float) -> None:
        """Train with ``lr`` (LR_FIND's suggestion): the optimizer's lr and the start of an epoch SCHEDULER, or
        ONE_CYCLE's peak (``max_lr``, which a framework's own one-cycle reads from the parameter groups)."""
        lr = float(lr)
        if self.config["ONE_CYCLE"] is not None:
            self.config = {**self.config, "ONE_CYCLE": {**self.config["ONE_CYCLE"], "max_lr": lr}}
            for group in self.optimizer.param_groups:
                group["max_lr"] = lr
            if self.scheduler is not None:
                self.scheduler = build_scheduler(self.config, self.optimizer, len(self.train_loader))
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if "initial_lr" in group:  # where an epoch scheduler's schedule starts
                group["initial_lr"] = lr
        if self.scheduler is not None:
            self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)

    def to_device(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the run's device, images in the model's memory format.

        Non-blocking copies: on CUDA, from the loaders' pinned memory, the copy overlaps with the work queued before.
        """
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return images, masks.to(self.device, non_blocking=True)

    def train_step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        """One optimisation step on one batch; returns its loss (the mean over its samples)."""
        images, masks = self.to_device(images, masks)
        with autocast(self.device, self.dtype):
            loss = self.loss_fn(self.train_model(images), masks)
        check_finite(loss, "training loss")
        backprop(loss, self.model, self.optimizer, self.scaler, self.config["GRAD_CLIP"])
        value = loss.item()
        self.after_step(value)
        return value

    def after_step(self, loss: float) -> None:
        """Count the step, step a per-batch schedule and log the step's loss."""
        self.step += 1
        if self.scheduler_per_step:
            self.scheduler.step()
        if self.tensorboard is not None:
            # Held: a signal raised inside the writer's queue hand-over can leave its thread waiting at close.
            with self._signals.held():
                self.tensorboard.log_step(self.step, loss)

    def mean_over_ranks(self, totals: dict[str, float], count: int) -> dict[str, float]:
        """Sums over this rank's samples and their count -> the means over the samples of all ranks.

        Summing sums and counts (rather than averaging each rank's mean) keeps uneven shards and short last
        batches weighted by what they hold, as in a single process.
        """
        *sums, count = sum_over_ranks([*totals.values(), count], self.device)
        return {key: value / count for key, value in zip(totals, sums, strict=True)}

    def sync_buffers(self) -> None:
        """Before validation: every rank takes rank 0's buffers (BatchNorm statistics), which DDP sends only at the
        start of a training step; all ranks then validate the very model that rank 0's checkpoint holds.
        """
        broadcast_buffers(self.model)

    def end_epoch(self, epoch: int, train_loss: float, val: dict[str, float]) -> bool:
        """After validation: step an epoch schedule, record the epoch, write checkpoints; True means stop early.

        Every rank calls it with the same (reduced) values; rank 0 records, and its early-stopping decision is sent
        to all ranks, so that they stop together.
        """
        if self.scheduler is not None and not self.scheduler_per_step:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val[self.config["CHECKPOINT_METRIC"]])
            else:
                self.scheduler.step()
        seconds = time.perf_counter() - self._epoch_started
        stop = False
        if self.recorder is not None:
            with self._signals.held():
                is_best = self.recorder.record_epoch(epoch, train_loss, val, self._epoch_lr, seconds)
                if self.tensorboard is not None:
                    logits = self.predict(self.val_images)
                    self.tensorboard.log_predictions(epoch, self.val_images, self.val_masks, logits)
                checkpoint = self.recorder.checkpoint(epoch, self.model, self.optimizer, self.scheduler, self.scaler)
                self.recorder.save(checkpoint, is_best)
            stop = self.recorder.should_stop()
        if self.hooks.on_epoch is not None:  # may raise RunPruned: the epoch is on disk already
            self.hooks.on_epoch(epoch, val)
        return broadcast_object(stop)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the model in eval mode (the mode it was in is restored)."""
        was_training = self.model.training
        self.model.eval()
        with autocast(self.device, self.dtype):
            logits = self.model(images.to(memory_format=self.memory_format))
        self.model.train(was_training)
        return logits.float()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Stop cleanly on Ctrl-C or SIGTERM, and record an interrupted, pruned or failed run before the exception
        goes on."""
        try:
            with self._signals.installed():
                yield
        except KeyboardInterrupt as interrupt:
            if self.recorder is not None:
                self.recorder.finish("interrupted", interrupt)
            raise
        except RunPruned as pruned:
            if self.recorder is not None:
                self.recorder.finish("pruned", pruned)
            raise
        except Exception as error:
            if self.recorder is not None:
                self.recorder.finish("failed", error)
            raise

    def finish(self) -> RunResult:
        """Record the completed run and return its result (rank 0's, on every rank)."""
        return broadcast_object(self.recorder.finish("completed") if self.recorder is not None else None)
