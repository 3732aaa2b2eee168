"""MLflow tracking of a run (use_mlflow): the MLFLOW* keys, train.py's --mlflow, and the hook that logs.

Each run is one MLflow run in the experiment MLFLOW_EXPERIMENT (default: the SESSION_NAME): the flattened config as
parameters (the names of experiments.csv), each epoch's history.csv row as metrics with the epoch as their step,
tags (routine, git commit, world size, status, and the keys a resume may change, EPOCHS first) and, at the end,
config.json, history.csv, curves.png (and the weights with MLFLOW_LOG_WEIGHTS) as artifacts. A resumed run continues
its MLflow run (its id is in the checkpoint). A trial of a search is a child run of its study's parent run, and a
fold of a cross-validation one of the cross-validation's, to which its cv_summary.csv goes once written: last.pt's
``cv_<metric>_mean``, ``_std`` and ``_oof`` (out-of-fold) as metrics, the config as parameters, its files as artifacts.

Where: ``MLFLOW_TRACKING_URI`` when it is set (a team server), else an SQLite store in LOG_DIR (``mlflow.db``, the
artifacts in ``mlartifacts/``; ``make mlflow-ui`` shows them). MLflow's client would retry an unreachable server for
minutes: the hook bounds its retries and timeout, and the first failure is one warning, after which the run goes on
without MLflow: its own files are complete either way.
"""

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from config.checks import of_type
from config.schema import Key
from training.checkpoint import RESUMABLE_CHANGES
from training.records import LOGGER
from utils.tracking.csv_logs import flatten

CONFIG_KEYS = {
    "MLFLOW": Key(
        "log the run to MLflow (MLFLOW_TRACKING_URI, else logs/mlflow.db)", of_type(bool, name="True or False"), False
    ),
    "MLFLOW_EXPERIMENT": Key(
        "the MLflow experiment of the run; None: the SESSION_NAME", of_type(str, name="a string", optional=True), None
    ),
    "MLFLOW_LOG_WEIGHTS": Key(
        "also store last.pt and best.pt as MLflow artifacts at the end", of_type(bool, name="True or False"), False
    ),
}

# Bounds on MLflow's HTTP client, set when the environment does not set them: no retry (urllib3 would log each
# one), 10 s a request; MLflow's own defaults retry for minutes.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# The run's status -> MLflow's; another stop that a hook asks for (a search's "pruned") ends FINISHED, tagged.
STATUSES = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# Keys that a resume may change are tags, not parameters: MLflow refuses to change a logged parameter.
CHANGING = {*RESUMABLE_CHANGES, *CONFIG_KEYS}
PARAM_LENGTH = 6000  # MLflow's longest parameter value (tags may be longer): a longer COMMENT is cut
_BAD_KEY = re.compile(r"[^\w.\- /:]")
# A parent run's kind -> the hook column (and tag) that names it: a search's study, a cross-validation.
PARENTS = {"study": "study", "cross_validation": "cv_name"}
CV_FILES = ["cv_summary.csv", "out_of_fold.csv", "folds.csv", "cv.json"]  # a cross-validation's, as artifacts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--mlflow."""
    parser.add_argument("--mlflow", action="store_true", help="log the run to MLflow; shortcut for --set MLFLOW=True")


def apply_arguments(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """--mlflow sets MLFLOW."""
    if args.mlflow:
        config["MLFLOW"] = True


def tracking_uri(log_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, or the SQLite store in ``log_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{log_dir.resolve() / 'mlflow.db'}"


def _text(value: Any) -> str:
    """A value as experiments.csv writes it (None empty, floats exactly)."""
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _reason(err: BaseException) -> str:
    """The gist of an MLflow error: an HTTP failure's cause ("[Errno 111] Connection refused", "Read timed out")
    rather than its whole chain of URLs."""
    text = " ".join(str(err).split())
    cause = re.search(r"\[Errno -?\d+\][^\"')]*|Read timed out|timed out", text)
    return cause.group(0).strip() if cause else f"{type(err).__name__}: {text[:200]}"


class MlflowHook:
    """Logs the run to MLflow; a failure of MLflow (a server down or slow) is one warning, then MLflow is left."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.experiment_name = config["MLFLOW_EXPERIMENT"] or config["SESSION_NAME"]
        self.log_weights = config["MLFLOW_LOG_WEIGHTS"]
        self.run_id: str | None = None
        self.client: Any = None
        self.failed = False

    def state_dict(self) -> dict[str, Any]:
        """The MLflow run's id, kept in the run's checkpoints so that a resumed run continues it."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed run: its MLflow run."""
        self.run_id = state.get("run_id")

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``; on any error one warning, and MLflow is not called again in this run."""
        if self.failed:
            return None
        try:
            return function(*args, **kwargs)
        except Exception as err:  # pylint: disable=broad-exception-caught  # MLflow must never cost the run
            self.failed = True
            where = getattr(self.client, "tracking_uri", "")
            LOGGER.warning("MLflow %s failed (%s): %s; the run goes on without MLflow", action, where, _reason(err))
            return None

    def _connect(self, run: Any) -> None:
        self._connect_to(run.recorder.run_dir.parent)

    def _connect_to(self, log_dir: Path) -> None:
        """A client of the run's store: MLFLOW_TRACKING_URI, or the SQLite file in ``log_dir``; bounded retries."""
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..." and co.
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient  # pylint: disable=import-outside-toplevel  # slow: only when on

        self.client = MlflowClient(tracking_uri(log_dir))

    def _open(self, run: Any) -> bool:
        """Create the MLflow run (a new run) or mark it running again (a resumed one); False: MLflow is off."""
        if self.client is None and not self.failed:
            self._call("connect", self._connect, run)
            if self.failed:
                return False
            if self.run_id is None:
                self.run_id = self._call("start", self._create, run)
            else:
                self._call("resume", self.client.update_run, self.run_id, status="RUNNING")
                self._call("resume", self._log_tags, run, {})
        return not self.failed and self.run_id is not None

    def _experiment_id(self, log_dir: Path) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if "MLFLOW_TRACKING_URI" not in os.environ:  # the local store keeps its artifacts in LOG_DIR too
            location = (log_dir / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(self.experiment_name, artifact_location=location)

    def _create(self, run: Any) -> str:
        """A new MLflow run with its parameters and tags (a child of its study's run in a search, of its
        cross-validation's for a fold)."""
        log_dir = run.recorder.run_dir.parent
        experiment_id = self._experiment_id(log_dir)
        columns = {key: value for hook in run.hooks for key, value in getattr(hook, "columns", {}).items()}
        tags = {}
        for kind, column in PARENTS.items():
            if column in columns:
                tags["mlflow.parentRunId"] = self._parent_run(log_dir, experiment_id, kind, str(columns[column]))
        mlflow_run = self.client.create_run(experiment_id, run_name=run.recorder.run_name, tags=tags)
        self._log_params(mlflow_run.info.run_id, run.jsonable_config)
        self._log_tags(run, {key: _text(value) for key, value in columns.items()}, mlflow_run.info.run_id)
        return mlflow_run.info.run_id

    def _log_params(self, run_id: str, jsonable_config: dict[str, Any]) -> None:
        """The flattened config as parameters, but for the keys a resume may change."""
        from mlflow.entities import Param  # pylint: disable=import-outside-toplevel

        params = [
            Param(_BAD_KEY.sub("_", key), _text(value)[:PARAM_LENGTH])
            for key, value in flatten(jsonable_config).items()
            if key.split(".")[0] not in CHANGING
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(run_id, params=params[start : start + 100])

    def _parent_run(self, log_dir: Path, experiment_id: str, kind: str, name: str) -> str:
        """The parent run of a search's study or of a cross-validation (``kind``), tagged ``kind`` and with its name
        under the column of PARENTS; created by its first child (locked: parallel jobs start together)."""
        tags = {PARENTS[kind]: name, "kind": kind}
        with FileLock(log_dir / ".mlflow-parent.lock", timeout=60):
            query = " and ".join(f"tags.{key} = '{value}'" for key, value in tags.items())
            found = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
            if found:
                return found[0].info.run_id
            parent = self.client.create_run(experiment_id, run_name=name, tags=tags)
            self.client.set_terminated(parent.info.run_id, "FINISHED")  # a folder for the children, never running
            return parent.info.run_id

    def log_cross_validation(self, folder: Path, log_dir: Path) -> None:
        """To the parent run of the cross-validation in ``folder``: its config as parameters (FOLD left out: each
        fold's own), last.pt's ``cv_<metric>_mean``, ``_std`` and ``_oof`` from cv_summary.csv as metrics at step
        0 (NaN where undefined), and its files as artifacts."""
        from mlflow.entities import Metric  # pylint: disable=import-outside-toplevel

        state = json.loads((folder / "cv.json").read_text(encoding="utf-8"))
        experiment_id = self._experiment_id(log_dir)
        run_id = self._parent_run(log_dir, experiment_id, "cross_validation", state["cv_name"])
        self._log_params(run_id, {key: value for key, value in state["config"].items() if key != "FOLD"})
        summary = pd.read_csv(folder / "cv_summary.csv")
        now, metrics = int(time.time() * 1000), []
        for row in summary[summary["checkpoint"] == "last.pt"].itertuples():
            for suffix, value in (("mean", row.mean), ("std", row.std), ("oof", row.out_of_fold)):
                metrics.append(Metric(_BAD_KEY.sub("_", f"cv_{row.metric}_{suffix}"), float(value), now, 0))
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        self.client.set_tag(run_id, "folds", str(state["folds"]))
        for name in CV_FILES:
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name))

    def _log_tags(self, run: Any, extra: dict[str, str], run_id: str | None = None) -> None:
        """Tags, and the keys a resume may change (EPOCHS...), which MLflow would refuse to change as parameters."""
        from mlflow.entities import RunTag  # pylint: disable=import-outside-toplevel

        tags = {
            "routine": run.routine,
            "status": "running",
            "world_size": str(run.world_size),
            "git_commit": run.recorder.git_commit,
            "git_dirty": run.recorder.git_dirty,
            "mlflow.source.git.commit": run.recorder.git_commit,
            "run_dir": str(run.recorder.run_dir),
            **{k: _text(v) for k, v in flatten(run.jsonable_config).items() if k.split(".")[0] in CHANGING},
            **extra,
        }
        entries = [RunTag(_BAD_KEY.sub("_", key), value[:PARAM_LENGTH]) for key, value in tags.items() if value != ""]
        self.client.log_batch(run_id or self.run_id, tags=entries)

    def on_start(self, run: Any) -> None:
        """Create the MLflow run."""
        self._open(run)

    def on_epoch_end(self, run: Any, row: dict[str, float]) -> None:
        """The epoch's history.csv row as metrics, the epoch as their step."""
        from mlflow.entities import Metric  # pylint: disable=import-outside-toplevel

        if self._open(run):
            epoch, now = int(row["epoch"]), int(time.time() * 1000)
            metrics = [Metric(_BAD_KEY.sub("_", k), float(v), now, epoch) for k, v in row.items() if k != "epoch"]
            self._call("logging", self.client.log_batch, self.run_id, metrics=metrics)

    def on_finish(self, run: Any, result: Any) -> None:
        """The run's files as artifacts, its status as a tag and as MLflow's own."""
        if not self._open(run):
            return
        files = [run.recorder.run_dir / name for name in ("config.json", "history.csv", "curves.png")]
        for path in files:
            if path.is_file():
                self._call("artifact upload", self.client.log_artifact, self.run_id, str(path))
        evaluation = run.recorder.run_dir / "evaluation"
        if evaluation.is_dir():
            self._call("artifact upload", self.client.log_artifacts, self.run_id, str(evaluation), "evaluation")
        if self.log_weights:
            for path in sorted(run.recorder.weight_dir.glob("*.pt")):
                self._call("weights upload", self.client.log_artifact, self.run_id, str(path), "weights")
        self._call("status", self.client.set_tag, self.run_id, "status", result.status)
        self._call("status", self.client.set_terminated, self.run_id, STATUSES.get(result.status, "FINISHED"))


def on_evaluation(checkpoint: dict[str, Any], folder: Path, log_dir: Path) -> None:
    """evaluate.py's tables of a run logged with MLflow go to its MLflow run, under evaluation/<name>; a failure is
    one warning (the tables are written already)."""
    run_id = (checkpoint.get("extensions") or {}).get(MlflowHook.__name__, {}).get("run_id")
    if not checkpoint["config"].get("MLFLOW") or run_id is None:
        return
    hook = MlflowHook({"MLFLOW_EXPERIMENT": None, "SESSION_NAME": "", "MLFLOW_LOG_WEIGHTS": False})
    hook.run_id = run_id
    hook._call("connect", hook._connect_to, log_dir)  # pylint: disable=protected-access  # its bounded call
    if hook.client is not None:
        hook._call(  # pylint: disable=protected-access
            "artifact upload", hook.client.log_artifacts, run_id, str(folder), f"evaluation/{folder.name}"
        )


def on_cross_validation(folder: Path, log_dir: Path) -> None:
    """A cross-validation logged with MLflow (MLFLOW in its cv.json): its cv_summary.csv to its parent run
    (:meth:`MlflowHook.log_cross_validation`); a failure is one warning (the files are written already)."""
    config = json.loads((folder / "cv.json").read_text(encoding="utf-8"))["config"]
    if not config.get("MLFLOW"):
        return
    hook = MlflowHook(config)
    hook._call("connect", hook._connect_to, log_dir)  # pylint: disable=protected-access  # its bounded call
    if hook.client is not None:
        hook._call("cross-validation summary", hook.log_cross_validation, folder, log_dir)  # pylint: disable=protected-access


def make_hook(config: dict[str, Any]) -> MlflowHook | None:
    """The hook when MLFLOW is on."""
    return MlflowHook(config) if config["MLFLOW"] else None
