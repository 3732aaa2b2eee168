"""RunRecorder: the files a run leaves for people, written the same way for every routine.

``logs/<run>/config.json``, ``history.csv`` (one row an epoch), ``curves.png``, ``train.log`` and ``git.diff`` (when
the code differs from its commit), and the run's row in ``logs/experiments.csv`` (status running, then completed,
interrupted, failed or what a hook's StopRun names). It writes; the Run decides (best epoch, early stopping).
"""

import importlib.metadata
import json
import logging
import platform
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from config.paths import ROOT_PATH, GlobalConfig
from utils.files import create_unique_dir, hold_lock, make_run_name
from utils.tracking.csv_logs import append_history, flatten, read_experiments, upsert_experiment
from utils.tracking.plot import plot_history

LOGGER = logging.getLogger("project")


def one_line(err: BaseException) -> str:
    """The error's message on one line. An error raised in a DataLoader worker comes back with the worker's whole
    traceback in its message ("Original Traceback ..."): its last line is the original message."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def describe_model(model: torch.nn.Module) -> str:
    """``UNet: 0.73 M parameters`` (``UNet: 11,121 parameters`` under 100,000): what a --config file built."""
    count = sum(parameter.numel() for parameter in model.parameters())
    return f"{type(model).__name__}: {f'{count / 1e6:.2f} M' if count >= 100_000 else f'{count:,}'} parameters"


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

    def report(self) -> str:
        """What train.py prints at the end: how the run went, its best epoch and where its files are."""
        best = ", ".join(f"{key} {value:.4f}" for key, value in self.best.items())
        return (
            f"run {self.run_name} {self.status}: best epoch {self.best_epoch} ({best})\n"
            f"logs: {self.run_dir}\nweights: {self.weight_dir}"
        )


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT_PATH, capture_output=True, text=True, timeout=10, check=True).stdout


def git_state() -> tuple[str, str, str]:
    """(commit, dirty, diff against HEAD) of the project's git checkout, or empty strings outside one."""
    try:
        commit, status = _git("rev-parse", "HEAD").strip(), _git("status", "--porcelain")
        diff = _git("diff", "HEAD") if status.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return "", "", ""
    return commit, str(bool(status.strip())), diff


def versions(routine: str) -> dict[str, str]:
    """Python, torch and the routine's framework versions, so that a result can be reproduced later."""
    package = {"ignite": "pytorch-ignite", "fastai": "fastai"}.get(routine, "torch")  # the raw routine: torch alone
    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "framework_version": f"{package} {importlib.metadata.version(package)}",
    }


class RunRecorder:
    """Writes a run's logs. ``run_name`` given: a resumed run, whose history is kept up to ``epochs_done``.

    Args:
        jsonable_config: the resolved config as JSON data (config/serialize.py), for config.json and the CSV row.
        extra_row: columns that the caller adds to the run's experiments.csv row (a search's study and trial).
        model: the model, whose class and parameter count the run's start line gives.
    """

    # curves.png is redrawn after an epoch only while drawing takes at most this share of the run's time (it takes
    # matplotlib 0.1 to 0.2 s): every epoch when epochs are long, less often when short; always at the end.
    CURVES_SHARE = 0.05

    def __init__(
        self,
        jsonable_config: dict[str, Any],
        global_config: GlobalConfig,
        routine: str,
        device: torch.device,
        world_size: int = 1,
        run_name: str | None = None,
        epochs_done: int = 0,
        extra_row: Mapping[str, Any] | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        self.config, self.routine, self.device, self.world_size = jsonable_config, routine, device, world_size
        self.extra_row = dict(extra_row or {})
        self.started_at, self._earlier_seconds = datetime.now(), 0.0
        self.history: list[dict[str, float]] = []
        self._curves_epochs, self._curves_seconds, self._curves_cost = 0, 0.0, 0.2
        session = jsonable_config["SESSION_NAME"]
        if run_name is None:
            self.run_dir = create_unique_dir(global_config.LOG_DIR, make_run_name(session, routine, self.started_at))
        else:
            self.run_dir = global_config.run_log_dir(run_name)
        self.run_name = self.run_dir.name
        self.weight_dir = global_config.run_weight_dir(self.run_name)
        self.experiments_csv, self.history_csv = global_config.LOG_DIR / "experiments.csv", self.run_dir / "history.csv"
        # One process trains a run at a time: a second one (--resume of a run still training) is refused.
        self._lock = hold_lock(self.run_dir / ".lock", f"run {self.run_name}")
        self.epochs_done = epochs_done  # from the checkpoint: history.csv may have lost rows since
        if run_name is not None:
            self._continue(epochs_done)
        (self.run_dir / "config.json").write_text(
            json.dumps({"run_name": self.run_name, "routine": routine, "config": jsonable_config}, indent=2) + "\n",
            encoding="utf-8",
        )
        self._log_handler: logging.Handler | None = None
        if jsonable_config["LOGFILE"]:
            self._log_handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
            self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            LOGGER.addHandler(self._log_handler)
            if LOGGER.level == logging.NOTSET:
                LOGGER.setLevel(logging.INFO)
        self.git_commit, self.git_dirty, diff = git_state()
        if diff:  # the code as it ran, when it differs from the commit
            (self.run_dir / "git.diff").write_text(diff, encoding="utf-8")
        self._clock = time.perf_counter()
        self.write_row("running")
        described = f", model {describe_model(model)}" if model is not None else ""
        LOGGER.info("run %s (%s routine) on %s%s: logs in %s", self.run_name, routine, device, described, self.run_dir)

    def _continue(self, epochs_done: int) -> None:
        """A resumed run keeps its history up to ``epochs_done`` (later rows are redone), start time and duration."""
        if self.history_csv.is_file():
            self.history = [
                row for row in pd.read_csv(self.history_csv).to_dict("records") if row["epoch"] <= epochs_done
            ]
            self.history_csv.unlink()
            for row in self.history:
                append_history(self.history_csv, row)
        rows = read_experiments(self.experiments_csv)
        rows = rows[rows["run_name"] == self.run_name]
        if not rows.empty:
            self.started_at = datetime.fromisoformat(str(rows.iloc[0]["started_at"]))
            if pd.notna(rows.iloc[0].get("duration_s")):
                self._earlier_seconds = float(rows.iloc[0]["duration_s"])

    def record_epoch(self, row: dict[str, float], best: bool) -> None:
        """Append one epoch's row (epoch, train_loss, val_*, lr, seconds) to history.csv, the log and curves.png."""
        self.history.append(row)
        self.epochs_done = int(row["epoch"])
        append_history(self.history_csv, row)
        if self._curves_seconds + self._curves_cost <= self.CURVES_SHARE * (time.perf_counter() - self._clock):
            self.draw_curves()
        values = "  ".join(f"{key} {value:.4f}" for key, value in row.items() if key not in ("epoch", "seconds"))
        epochs = self.config["EPOCHS"]
        LOGGER.info(
            "epoch %d/%d  %s  %.1fs%s", row["epoch"], epochs, values, row["seconds"], "  (best)" if best else ""
        )

    def draw_curves(self) -> None:
        """Draw curves.png from history.csv, unless it already shows every recorded epoch."""
        if not self.history or self._curves_epochs == len(self.history):
            return
        start = time.perf_counter()
        plot_history(self.history_csv, self.run_dir / "curves.png")
        self._curves_cost = time.perf_counter() - start
        self._curves_epochs, self._curves_seconds = len(self.history), self._curves_seconds + self._curves_cost

    def result(self, status: str, best_epoch: int | None, error: BaseException | None = None) -> RunResult:
        """The run's RunResult with the metrics of its best and last epochs."""
        best = next((row for row in self.history if row["epoch"] == best_epoch), {})
        final = self.history[-1] if self.history else {}
        return RunResult(
            run_name=self.run_name,
            status=status,
            run_dir=self.run_dir,
            weight_dir=self.weight_dir,
            epochs_completed=self.epochs_done,
            best_epoch=best_epoch,
            best={k: v for k, v in best.items() if k.startswith(("val_", "train_"))},
            final={k: v for k, v in final.items() if k.startswith(("val_", "train_"))},
            # One line, whatever the framework made of the message (fastai adds its own lines around it).
            error=None if error is None else f"{type(error).__name__}: {one_line(error)}",
        )

    def finish(self, result: RunResult) -> None:
        """Draw the last curves, write the run's final experiments.csv row and close train.log."""
        try:
            self.draw_curves()
        except Exception as err:  # pylint: disable=broad-exception-caught  # a plot must not cost the run's row
            LOGGER.warning("run %s: curves.png not drawn: %s", self.run_name, err)
        self.write_row(result.status, result)
        if result.status not in ("completed", "interrupted"):
            LOGGER.warning("run %s %s: %s", self.run_name, result.status, result.error)
        if self._log_handler is not None:
            LOGGER.removeHandler(self._log_handler)
            self._log_handler.close()
        (self.run_dir / ".lock.pid").unlink(missing_ok=True)
        self._lock.release()

    def write_row(self, status: str, result: RunResult | None = None) -> None:
        """Insert or update the run's row in experiments.csv (file-locked: runs may finish at the same time)."""
        finished = datetime.now() if result is not None else None
        row: dict[str, Any] = {
            "run_name": self.run_name,
            "session_name": self.config["SESSION_NAME"],
            "routine": self.routine,
            "status": status,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds") if finished else None,
            "duration_s": round(self._earlier_seconds + time.perf_counter() - self._clock, 1) if finished else None,
            "epochs_completed": self.epochs_done,
            "best_epoch": result.best_epoch if result is not None else None,
        }
        if result is not None:
            row.update({f"best_{key}": value for key, value in result.best.items()})
            row.update({f"final_{key}": value for key, value in result.final.items()})
        row.update(git_commit=self.git_commit, git_dirty=self.git_dirty, device=str(self.device))
        row.update(world_size=self.world_size, run_dir=str(self.run_dir), **versions(self.routine), **self.extra_row)
        row.update(flatten(self.config))
        if result is not None and result.error:
            row["error"] = result.error
        upsert_experiment(self.experiments_csv, row)
