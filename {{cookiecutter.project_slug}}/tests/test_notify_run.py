"""The messages a run sends (completed, failed, interrupted), and a training run with NOTIFY, end to end."""

import importlib
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from smtp_server import (
    PASSWORD,
    RECIPIENT,
    USER,
    _authenticator,
    _body,
    _free_port,
    _settings,
    _smtp_env,
    _warnings,
    forget_personal_settings,
    smtp_server,
)

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.records import RunResult
from utils.losses import dice_bce
from utils.notify.messages import run_failed_message
from utils.notify.smtp import notify_run
from utils.tracking.csv_logs import append_history
from utils.tracking.plot import plot_history


@pytest.fixture(autouse=True)
def _no_personal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SMTP_* variables and .env must not reach the tests (nor the tests' servers)."""
    forget_personal_settings(monkeypatch)


# ---------------------------------------------------------------------------------------------------------------------
# The message of a run
# ---------------------------------------------------------------------------------------------------------------------


def _run(tmp_path: Path, status: str, error: str | None = None) -> tuple[RunResult, list[dict[str, float]]]:
    """A run folder as a RunRecorder leaves it: history.csv, curves.png, train.log, last.pt."""
    run_dir, weight_dir = tmp_path / "logs" / "20250101-120000_demo_pytorch", tmp_path / "weights" / "run"
    run_dir.mkdir(parents=True)
    weight_dir.mkdir(parents=True)
    (weight_dir / "last.pt").write_bytes(b"checkpoint")
    history = [
        {"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 1.2 / epoch, "val_dice": 0.3 * epoch, "lr": 1e-4}
        for epoch in (1, 2, 3)
    ]
    for row in history:
        append_history(run_dir / "history.csv", row)
    plot_history(run_dir / "history.csv", run_dir / "curves.png")
    log_lines = [f"2025-01-01 12:00:{i:02d} INFO log line {i}" for i in range(1, 51)]
    (run_dir / "train.log").write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    result = RunResult(
        run_name=run_dir.name,
        status=status,
        run_dir=run_dir,
        weight_dir=weight_dir,
        epochs_completed=3,
        best_epoch=3,
        best={k: v for k, v in history[-1].items() if k.startswith(("train_", "val_"))},
        final={k: v for k, v in history[-1].items() if k.startswith(("train_", "val_"))},
        error=error,
    )
    return result, history


def test_completed_run_sends_the_summary_and_the_curves(tmp_path: Path) -> None:
    result, history = _run(tmp_path, "completed")
    with smtp_server() as (inbox, port):
        assert notify_run(RECIPIENT, result, history, metric="val_dice", settings=_settings(port))
    message = inbox.messages()[0]
    assert result.run_name in message["Subject"] and "completed" in message["Subject"]
    assert "best val_dice 0.9000 (epoch 3)" in message["Subject"]
    body = _body(message)
    assert str(result.run_dir) in body and str(result.weight_dir) in body
    assert re.search(r"Best epoch 3 \(by val_dice\):\n.*\n.*\n  val_dice +0\.9000\n", body)
    assert "epoch  train_loss  val_loss  val_dice" in body  # the epoch table
    (curves,) = message.iter_attachments()
    assert curves.get_filename() == "curves.png"
    assert curves.get_content() == (result.run_dir / "curves.png").read_bytes()


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_failed_or_interrupted_run_sends_the_error_and_the_end_of_the_log(tmp_path: Path, status: str) -> None:
    error = "RuntimeError: CUDA out of memory" if status == "failed" else "KeyboardInterrupt: "
    result, _ = _run(tmp_path, status, error)
    with smtp_server() as (inbox, port):
        assert notify_run([RECIPIENT], result, settings=_settings(port))
    message = inbox.messages()[0]
    assert f"run {result.run_name} {status}" in message["Subject"]
    body = _body(message)
    assert error.strip() in body
    assert f"python train.py --resume {result.run_name}" in body
    assert "log line 50" in body and "log line 21" in body and "log line 20\n" not in body  # the last 30 lines


def test_the_failure_mail_gives_the_run_s_own_resume_command(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, "interrupted", "KeyboardInterrupt: SIGTERM")
    command = f"python train.py --routine ignite --set EPOCHS=9 --resume {result.run_name}"
    message = run_failed_message(result, details={"routine": "ignite"}, resume=command)
    assert f"continue the run with:\n  {command}\n" in message.body


def test_notify_run_never_raises_and_leaves_the_run_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result, history = _run(tmp_path, "completed")
    files = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    before = {path: path.read_bytes() for path in files}
    assert not notify_run(RECIPIENT, result, history)  # SMTP_HOST is not set
    assert not notify_run(RECIPIENT, result, history, settings=_settings(_free_port()))  # nobody listens
    assert not notify_run("not-an-address", result, history, settings=_settings(_free_port()))
    warnings = _warnings(caplog)
    assert len(warnings) == 3 and all(warning.startswith("e-mail not sent: ") for warning in warnings)
    assert "SMTP_HOST is not set" in warnings[0] and "cannot connect" in warnings[1] and "not-an-address" in warnings[2]
    assert sorted(path for path in tmp_path.rglob("*") if path.is_file()) == files
    assert all(path.read_bytes() == content for path, content in before.items())


# ---------------------------------------------------------------------------------------------------------------------
# A training run with NOTIFY, end to end
# ---------------------------------------------------------------------------------------------------------------------


LOSS_CALLS: list[int] = []


def loss_that_fails_in_training(logits: Any, target: Any) -> Any:
    """At the top level, so that the run can save it by name; fine for the sanity check, then NaN."""
    LOSS_CALLS.append(1)
    return dice_bce(logits, target) * (float("nan") if len(LOSS_CALLS) > 1 else 1.0)


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_a_run_with_notify_mails_its_outcome(
    outcome: str, tiny_config: dict, global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    LOSS_CALLS.clear()
    routine = importlib.import_module(f"training.{ROUTINES[0]}_training")
    config = {**tiny_config, "EPOCHS": 1, "NOTIFY": RECIPIENT}
    if outcome == "failed":
        config["LOSS"] = loss_that_fails_in_training
    # A server that wants a login, so that the password is really used (without TLS: allowed on 127.0.0.1 only).
    with smtp_server(authenticator=_authenticator, auth_require_tls=False) as (inbox, port):
        _smtp_env(monkeypatch, port)
        monkeypatch.setenv("SMTP_USER", USER)
        monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
        if outcome == "failed":
            with pytest.raises(FloatingPointError):
                routine.train(config, global_config)
        else:
            routine.train(config, global_config)
        (message,) = inbox.messages()
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == outcome and message["To"] == RECIPIENT
    assert f"run {row['run_name']} {outcome}" in message["Subject"]
    if outcome == "completed":
        (attachment,) = [part for part in message.iter_attachments() if part.get_filename() == "curves.png"]
        assert attachment.get_content() == (Path(row["run_dir"]) / "curves.png").read_bytes()
    else:
        assert "the training loss is nan at epoch 1, step 1" in _body(message)
    # The password is in no file the run wrote: logs, CSVs, config.json, checkpoints.
    for path in [*global_config.LOG_DIR.rglob("*"), *global_config.WEIGHT_DIR.rglob("*")]:
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes()
