"""MLflow tracking for real: runs read back with MlflowClient from the local SQLite store and from a real
``mlflow server`` on 127.0.0.1, resumed and stopped runs, a search's trials as child runs, and a server that stops
in the middle of a run (one warning; the run and its own files complete)."""

import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_distributed import probe_fixture, torchrun  # noqa: F401  # pylint: disable=unused-import  # the fixture

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from extensions.mlflow_tracking import tracking_uri
from utils.tracking.csv_logs import flatten

SERVER_START_S = 120  # an mlflow server answers within seconds; the bound keeps a broken one from hanging the tests


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MLflow server must not receive the tests' runs."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def _train(routine: str, config: dict, global_config: GlobalConfig, **kwargs: Any) -> Any:
    return importlib.import_module(f"training.{routine}_training").train(config, global_config, **kwargs)


def _mlflow_config(tiny_config: dict, **changes: Any) -> dict:
    quiet = {"TENSORBOARD": False} if "TENSORBOARD" in tiny_config else {}  # the key exists with its option only
    return {**tiny_config, **quiet, "MLFLOW": True, "MLFLOW_EXPERIMENT": "tests", **changes}


def _only_run(client: MlflowClient, experiment: str = "tests") -> Any:
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def _last_per_step(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """The metric's last value at each step (a resumed run logs the epochs it redoes again)."""
    values: dict[int, float] = {}
    for metric in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        values[metric.step] = metric.value
    return values


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every warning line, from any logger (urllib3's retries would be lines too)."""
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


class _At:
    """A hook that calls ``action`` after epoch ``epoch`` (after the MLflow hook has logged it)."""

    def __init__(self, epoch: int, action: Any) -> None:
        self.epoch, self.action = epoch, action

    def on_epoch_end(self, run: Any, row: dict[str, float]) -> None:  # pylint: disable=unused-argument
        """Act after the chosen epoch."""
        if row["epoch"] == self.epoch:
            self.action()


def _check_run_matches_files(client: MlflowClient, mlflow_run: Any, result: Any, routine: str) -> None:
    """Parameters, metrics, tags and artifacts of ``mlflow_run`` are those of ``result``'s files."""
    history = pd.read_csv(result.run_dir / "history.csv")
    for column in history.columns.drop("epoch"):
        assert _last_per_step(client, mlflow_run.info.run_id, column) == dict(
            zip(history["epoch"].tolist(), history[column].tolist(), strict=True)
        ), column
    row = pd.read_csv(result.run_dir.parent / "experiments.csv", dtype=str, keep_default_na=False)
    row = row.set_index("run_name").loc[result.run_name]
    params = mlflow_run.data.params
    assert params and all(row[key] == value for key, value in params.items())  # the names and text of the CSV
    config_keys = {key.split(".")[0] for key in flatten({key: 0 for key in params})}
    assert "EPOCHS" not in config_keys and {"MODEL", "OPTIMIZER_CONFIG", "SEED"} <= config_keys
    tags = mlflow_run.data.tags
    assert tags["routine"] == routine and tags["world_size"] == "1" and tags["EPOCHS"] == row["EPOCHS"]
    assert tags["status"] == result.status and tags.get("git_commit", "") == row["git_commit"]
    assert mlflow_run.info.run_name == result.run_name
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"config.json", "history.csv", "curves.png"} <= artifacts


# The raw routine in the fast tier; the others in the slow one (MLflow's import and a new store take about 5 s).
@pytest.mark.parametrize(
    "routine", [pytest.param(r, marks=[pytest.mark.slow] if r != "pytorch" else []) for r in ROUTINES]
)
def test_a_run_is_read_back_from_the_local_store(routine: str, tiny_config: dict, global_config: GlobalConfig):
    result = _train(routine, _mlflow_config(tiny_config), global_config)
    assert (global_config.LOG_DIR / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    mlflow_run = _only_run(client)
    assert mlflow_run.info.status == "FINISHED"
    _check_run_matches_files(client, mlflow_run, result, routine)
    assert Path(mlflow_run.info.artifact_uri.removeprefix("file://")).is_relative_to(global_config.LOG_DIR.resolve())


@pytest.mark.slow
def test_an_interrupted_run_is_killed_and_its_resume_continues_the_same_mlflow_run(
    tiny_config: dict, global_config: GlobalConfig
):
    def interrupt() -> None:
        raise KeyboardInterrupt

    config = _mlflow_config(tiny_config, EPOCHS=2, MLFLOW_LOG_WEIGHTS=True)
    with pytest.raises(KeyboardInterrupt):
        _train("pytorch", config, global_config, hooks=[_At(1, interrupt)])
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    stopped = _only_run(client)
    assert stopped.info.status == "KILLED" and stopped.data.tags["status"] == "interrupted"

    result = _train("pytorch", {**config, "EPOCHS": 3}, global_config, resume="latest")
    resumed = _only_run(client)  # the same MLflow run, not a second one
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["EPOCHS"] == "3"
    _check_run_matches_files(client, resumed, result, "pytorch")
    assert sorted(_last_per_step(client, resumed.info.run_id, "val_dice")) == [1, 2, 3]
    weights = {a.path for a in client.list_artifacts(resumed.info.run_id, "weights")}
    assert weights == {"weights/last.pt", "weights/best.pt"}


@pytest.mark.slow
def test_a_resume_whose_mlflow_run_is_out_of_reach_costs_one_warning(
    tiny_config: dict, global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, caplog
):
    config = _mlflow_config(tiny_config, EPOCHS=1)
    first = _train("pytorch", config, global_config)
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    resumed = _train("pytorch", {**config, "EPOCHS": 2}, global_config, resume="latest")
    assert resumed.run_name == first.run_name and resumed.status == "completed" and resumed.epochs_completed == 2
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("MLflow resume failed"), warnings


@pytest.mark.slow
def test_a_failed_run_is_failed_in_mlflow(tiny_config: dict, global_config: GlobalConfig):
    def fail() -> None:
        raise RuntimeError("broken on purpose")

    with pytest.raises(RuntimeError):
        _train("pytorch", _mlflow_config(tiny_config), global_config, hooks=[_At(1, fail)])
    mlflow_run = _only_run(MlflowClient(tracking_uri(global_config.LOG_DIR)))
    assert mlflow_run.info.status == "FAILED" and mlflow_run.data.tags["status"] == "failed"


@pytest.mark.slow
def test_the_trials_of_a_search_are_child_runs_of_the_study(tiny_config: dict, global_config: GlobalConfig):
    optuna = pytest.importorskip("optuna")
    search_module = pytest.importorskip("training.search")
    choice = pytest.importorskip("training.search_space").choice

    config = _mlflow_config(tiny_config, EPOCHS=1, CHECKPOINT_METRIC="val_dice", CHECKPOINT_MODE="max")
    search = search_module.Search(
        "study1", config, {"OPTIMIZER_CONFIG.lr": choice(1e-2, 1e-3)}, "pytorch", "val_dice", "maximize", global_config
    )
    optuna.create_study(direction="maximize").optimize(search.objective, n_trials=2)
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    parents = [run for run in runs if run.data.tags.get("kind") == "study"]
    assert len(parents) == 1 and parents[0].info.run_name == "study1"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(run.data.tags["trial"] for run in children) == ["0", "1"] and len(runs) == 3
    assert {run.data.params["OPTIMIZER_CONFIG.lr"] for run in children} <= {"0.01", "0.001"}


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_logs(probe: Path, global_config: GlobalConfig):
    result = torchrun("train.py", "--config", str(probe / "probe_config.py"), "--epochs", "2", "--mlflow")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.tags["world_size"] == "2"
    history = pd.read_csv(next(global_config.LOG_DIR.glob("*/history.csv")))
    assert _last_per_step(client, runs[0].info.run_id, "val_loss") == dict(
        zip(history["epoch"].tolist(), history["val_loss"].tolist(), strict=True)
    )


# ---------------------------------------------------------------------------------------------------------------------
# A real tracking server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow server`` on 127.0.0.1 with its store in ``folder``: (its URI, its process), stopped on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    log = (folder / "server.log").open("w", encoding="utf-8")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner processes: a tracking server
    process = subprocess.Popen(  # noqa: S603
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()}") from None
                time.sleep(0.5)
        yield uri, process
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server and its workers (its own process group); SIGKILL: as a crash would."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_a_run_is_logged_to_a_tracking_server_and_a_server_that_stops_costs_one_warning(
    tiny_config: dict, global_config: GlobalConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    caplog.set_level(logging.WARNING)
    with mlflow_server(tmp_path) as (uri, process):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        result = _train("pytorch", _mlflow_config(tiny_config), global_config)
        client = MlflowClient(uri)
        mlflow_run = _only_run(client)
        assert mlflow_run.info.status == "FINISHED" and not _warnings(caplog)
        _check_run_matches_files(client, mlflow_run, result, "pytorch")
        assert not (global_config.LOG_DIR / "mlflow.db").exists()  # the server's store, not the local one

        # The server dies after the first epoch of the next run: one warning, and the run completes.
        started = time.monotonic()
        result = _train(
            "pytorch",
            _mlflow_config(tiny_config, EPOCHS=3),
            global_config,
            hooks=[_At(1, lambda: _stop(process, signal.SIGKILL))],
        )
    seconds = time.monotonic() - started
    assert result.status == "completed" and result.epochs_completed == 3
    assert pd.read_csv(result.run_dir / "history.csv")["epoch"].tolist() == [1, 2, 3]
    assert len(_warnings(caplog)) == 1, _warnings(caplog)
    assert seconds < 60  # bounded retries: not MLflow's own minutes of retrying
    # What reached the server before it stopped: the run, running, with its first epoch.
    stored = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")
    runs = stored.search_runs([stored.get_experiment_by_name("tests").experiment_id], order_by=["start_time DESC"])
    assert runs[0].info.run_name == result.run_name and runs[0].info.status == "RUNNING"
    assert sorted(_last_per_step(stored, runs[0].info.run_id, "val_loss")) == [1]


@pytest.mark.slow
def test_a_server_that_never_answers_costs_one_warning_within_the_timeout(
    tiny_config: dict, global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, caplog
):
    caplog.set_level(logging.WARNING)
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        started = time.monotonic()
        result = _train("pytorch", _mlflow_config(tiny_config), global_config)
        seconds = time.monotonic() - started
    assert result.status == "completed" and (result.run_dir / "curves.png").is_file()
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("MLflow start failed") and "timed out" in warnings[0], warnings
    assert seconds < 30
