"""The e-mail notifier against a real SMTP server (aiosmtpd on 127.0.0.1): delivery, TLS, login, every failure."""

import asyncio
import email
import importlib
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.records import RunResult
from utils.losses import dice_bce
from utils.tracking.csv_logs import append_history
from utils.tracking.plot import plot_history
from utils.notify.messages import run_failed_message
from utils.notify.settings import SMTPConfigError, SMTPSettings, parse_recipients, read_env_file
from utils.notify.smtp import SMTPDeliveryError, SMTPNotifier, notify_run

USER = "bob"
PASSWORD = "s3cret-Pa55 word"  # distinctive, so that a leak is found by a plain substring search
SENDER = "runs@example.org"
RECIPIENT = "alice@example.org"


# ---------------------------------------------------------------------------------------------------------------------
# A real SMTP server
# ---------------------------------------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler that keeps every message it is given, with how the client logged in."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.received: list[tuple[Any, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802  # pylint: disable=invalid-name
        """aiosmtpd calls this, by this name, with each message."""
        del server  # aiosmtpd's hook signature
        await asyncio.sleep(self.delay_s)  # a slow server takes its time before it answers the message
        self.received.append((envelope, session))
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        """What arrived, parsed back with the email package."""
        return [
            email.message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
            for envelope, _ in self.received
        ]


def _free_port() -> int:
    # aiosmtpd 1.4.6 cannot bind port 0 itself (its readiness check connects to the port it was given).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    del server, session, envelope, mechanism  # aiosmtpd's authenticator signature
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False makes aiosmtpd answer "535" itself; with handled=True the client would wait for a reply.
    return AuthResult(success=good, handled=False)


@contextmanager
def smtp_server(inbox: Inbox | None = None, **options: Any) -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server on 127.0.0.1 (``options`` go to aiosmtpd's SMTP class); yields its inbox and port."""
    inbox = inbox or Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(name="certificate", scope="session")
def _certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key), both PEM."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture(autouse=True)
def _no_personal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SMTP_* variables and .env must not reach the tests (nor the tests' servers)."""
    for name in list(os.environ):
        if name.startswith("SMTP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SMTP_ENV_FILE", os.devnull)


def _settings(port: int, **changes: Any) -> SMTPSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sender": SENDER, "security": "none", "timeout": 5}
    values.update(changes)
    return SMTPSettings(**values)


def _body(message: EmailMessage) -> str:
    # SMTP carries lines ending in CRLF; the parsed text keeps them.
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


# ---------------------------------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------------------------------


def test_plain_message_arrives_with_subject_body_and_attachments(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,val_dice\n1,0.5\n", encoding="utf-8")
    with smtp_server() as (inbox, port):
        notifier = SMTPNotifier(_settings(port), [RECIPIENT, "bob@example.org"])
        assert notifier.send("run done: dice ≥ 0.9", "Résumé\nline two\n", attachments=[png, csv])
    (envelope, _), message = inbox.received[0], inbox.messages()[0]
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == [RECIPIENT, "bob@example.org"]
    assert message["Subject"] == "run done: dice ≥ 0.9"
    assert _body(message) == "Résumé\nline two\n"
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert attachments["curves.png"].get_content_type() == "image/png"
    assert attachments["curves.png"].get_content() == png.read_bytes()
    assert attachments["history.csv"].get_content_type() == "text/csv"


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


def test_starttls_with_login_trusts_a_private_ca(certificate: tuple[Path, Path]) -> None:
    options = {"tls_context": _server_tls(certificate), "require_starttls": True, "authenticator": _authenticator}
    with smtp_server(**options) as (inbox, port):
        settings = _settings(port, security="starttls", user=USER, password=PASSWORD, ca_file=certificate[0])
        assert SMTPNotifier(settings, RECIPIENT).send("over TLS", "body")
    _, session = inbox.received[0]
    assert session.ssl is not None and session.authenticated  # encrypted, then logged in
    assert inbox.messages()[0]["Subject"] == "over TLS"


def test_implicit_tls_with_login(certificate: tuple[Path, Path]) -> None:
    # aiosmtpd only counts STARTTLS as TLS: on an SMTPS port it must be told that AUTH is fine without it.
    options = {"ssl_context": _server_tls(certificate), "authenticator": _authenticator, "auth_require_tls": False}
    with smtp_server(**options) as (inbox, port):
        settings = _settings(port, security="ssl", user=USER, password=PASSWORD, ca_file=certificate[0])
        assert SMTPNotifier(settings, RECIPIENT).send("over SMTPS", "body")
    assert inbox.messages()[0]["Subject"] == "over SMTPS"


# ---------------------------------------------------------------------------------------------------------------------
# Failures: one warning, False, within the timeout, never the password
# ---------------------------------------------------------------------------------------------------------------------


def test_wrong_password_warns_within_the_timeout_and_never_shows_the_password(
    certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="project")
    wrong = "Wr0ng-" + PASSWORD
    options = {"tls_context": _server_tls(certificate), "require_starttls": True, "authenticator": _authenticator}
    with smtp_server(**options) as (inbox, port):
        settings = _settings(port, security="starttls", user=USER, password=wrong, ca_file=certificate[0], timeout=3)
        notifier = SMTPNotifier(settings, RECIPIENT)
        started = time.monotonic()
        assert not notifier.send("never", "body")
        assert time.monotonic() - started < 3
        with pytest.raises(SMTPDeliveryError) as raised:
            notifier.deliver("never", "body")
    assert not inbox.received
    assert _warnings(caplog) == [
        "e-mail not sent: login as bob refused by the server (535 5.7.8 Authentication credentials invalid)"
    ]
    texts = [record.getMessage() for record in caplog.records] + [str(raised.value), repr(settings), repr(notifier)]
    texts.append(settings.describe())
    assert not [text for text in texts if wrong in text or PASSWORD in text]


def test_untrusted_certificate_warns_and_names_the_setting(
    certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_server(tls_context=_server_tls(certificate), require_starttls=True) as (inbox, port):
        assert not SMTPNotifier(_settings(port, security="starttls"), RECIPIENT).send("never", "body")
    assert not inbox.received
    (warning,) = _warnings(caplog)
    assert "not trusted" in warning and "SMTP_CA_FILE" in warning


def test_refused_connection_warns_at_once(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    assert not SMTPNotifier(_settings(port), RECIPIENT).send("never", "body")
    assert time.monotonic() - started < 1
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"e-mail not sent: cannot connect to 127.0.0.1:{port} (")
    assert "refused" in warning.lower()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel does, from its backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@contextmanager
def slow_server() -> Iterator[int]:
    """A real SMTP server that greets at once but takes 3 s to answer the message."""
    with smtp_server(Inbox(delay_s=3)) as (_, port):
        yield port


@pytest.mark.parametrize(
    ("server", "stage"), [(silent_server, "before its greeting"), (slow_server, "while sending the message")]
)
def test_slow_server_gives_up_within_the_timeout(
    server: Callable[[], Any], stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server() as port:
        started = time.monotonic()
        assert not SMTPNotifier(_settings(port, timeout=1), RECIPIENT).send("never", "body")
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.5
    assert _warnings(caplog) == [f"e-mail not sent: no answer from 127.0.0.1:{port} within 1 s ({stage})"]


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
# Settings
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.1", "localhost.example.org"])
def test_unencrypted_smtp_is_refused_for_another_machine(host: str) -> None:
    with pytest.raises(SMTPConfigError, match=f"unencrypted to {host}; it is only allowed for a server on this"):
        SMTPSettings.from_env({"SMTP_HOST": host, "SMTP_SECURITY": "none", "SMTP_FROM": SENDER})


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_unencrypted_smtp_is_allowed_on_this_machine(host: str) -> None:
    settings = SMTPSettings.from_env({"SMTP_HOST": host, "SMTP_SECURITY": "NONE", "SMTP_FROM": SENDER})
    assert (settings.security, settings.port) == ("none", 25)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "SMTP_HOST is not set"),
        ({"SMTP_SECURITY": "tls"}, "SMTP_SECURITY must be one of starttls, ssl, none, got 'tls'"),
        ({"SMTP_PORT": "five"}, "SMTP_PORT must be a whole number, got 'five'"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT must be a port number"),
        ({"SMTP_TIMEOUT": "0"}, "SMTP_TIMEOUT must be a number of seconds > 0"),
        ({"SMTP_TIMEOUT": "inf"}, "SMTP_TIMEOUT must be a number of seconds > 0"),
        ({"SMTP_FROM": ""}, "SMTP_FROM is not set"),
        ({"SMTP_FROM": "runs"}, "SMTP_FROM must be the sender's e-mail address"),
        ({"SMTP_PASSWORD": PASSWORD}, "SMTP_PASSWORD is set but SMTP_USER is not"),
        ({"SMTP_CA_FILE": "/no/such/ca.pem"}, "SMTP_CA_FILE /no/such/ca.pem: no such file"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], problem: str) -> None:
    full = {"SMTP_HOST": "smtp.example.org", "SMTP_FROM": SENDER} if environ else {}
    full.update(environ)
    with pytest.raises(SMTPConfigError) as raised:
        SMTPSettings.from_env(full)
    assert problem in str(raised.value) and PASSWORD not in str(raised.value)


def test_a_ca_file_that_holds_no_certificate_is_named(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(SMTPConfigError, match=f"SMTP_CA_FILE {ca_file}: not a PEM certificate"):
        SMTPSettings.from_env({"SMTP_HOST": "smtp.example.org", "SMTP_FROM": SENDER, "SMTP_CA_FILE": str(ca_file)})


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# mail settings\n"
        "\n"
        "SMTP_HOST=smtp.example.org   # the relay\n"
        "export SMTP_USER='bob'\n"
        'SMTP_PASSWORD="pa ss\\"wo#rd"\n'
        "SMTP_FROM=runs@example.org\n"
        "SMTP_PORT=2525\n"
        "SMTP_TIMEOUT=7.5\n"
        "OTHER_KEY=not an SMTP setting\n"
        "this line is broken, and holds hunter2\n",
        encoding="utf-8",
    )
    settings = SMTPSettings.from_env({"SMTP_PORT": "587", "SMTP_ENV_FILE": "/ignored"}, env_file=env_file)
    assert (settings.host, settings.user, settings.password) == ("smtp.example.org", "bob", 'pa ss"wo#rd')
    assert (settings.port, settings.timeout, settings.sender, settings.security) == (587, 7.5, SENDER, "starttls")
    (warning,) = _warnings(caplog)
    assert warning == f"{env_file}: line 10 skipped (expected KEY=VALUE)"  # its number, never its text
    # SMTP_ENV_FILE points at the file when none is given; a value set to "" in the environment still wins.
    settings = SMTPSettings.from_env({"SMTP_ENV_FILE": str(env_file), "SMTP_USER": "", "SMTP_PASSWORD": ""})
    assert (settings.user, settings.password, settings.port) == ("", "", 2525)
    assert not read_env_file(tmp_path / "missing.env")


def test_the_sender_defaults_to_a_login_that_is_an_address() -> None:
    settings = SMTPSettings.from_env({"SMTP_HOST": "smtp.example.org", "SMTP_USER": "me@example.org"})
    assert settings.sender == "me@example.org"


def test_recipients_are_parsed_and_checked() -> None:
    assert parse_recipients("a@b.org, c@d.org;a@b.org") == ["a@b.org", "c@d.org"]
    assert parse_recipients(["a@b.org", "c@d.org e@f.org"]) == ["a@b.org", "c@d.org", "e@f.org"]
    with pytest.raises(SMTPConfigError, match="'a@b' is not an e-mail address"):
        parse_recipients("a@b")
    with pytest.raises(SMTPConfigError, match="no e-mail address"):
        parse_recipients([])


# ---------------------------------------------------------------------------------------------------------------------
# python -m utils.notify.smtp --test
# ---------------------------------------------------------------------------------------------------------------------


def _smtp_env(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SMTP_FROM", SENDER)
    monkeypatch.setenv("SMTP_TIMEOUT", "5")


def test_cli_sends_a_test_message(monkeypatch: pytest.MonkeyPatch, run_script: Callable[..., Any]) -> None:
    with smtp_server() as (inbox, port):
        _smtp_env(monkeypatch, port)
        process = run_script("-m", "utils.notify.smtp", "--test", RECIPIENT)
    assert process.returncode == 0, process.stderr
    assert f"ok: the server accepted the message for {RECIPIENT}" in process.stdout
    (message,) = inbox.messages()
    assert message["Subject"].endswith("test message") and message["To"] == RECIPIENT


def test_cli_says_what_failed(monkeypatch: pytest.MonkeyPatch, run_script: Callable[..., Any]) -> None:
    port = _free_port()
    _smtp_env(monkeypatch, port)
    process = run_script("-m", "utils.notify.smtp", "--test", RECIPIENT)
    assert process.returncode == 1
    assert f"error: e-mail not sent: cannot connect to 127.0.0.1:{port} (" in process.stderr
    monkeypatch.delenv("SMTP_HOST")
    process = run_script("-m", "utils.notify.smtp", "--test", RECIPIENT)
    assert process.returncode == 1 and process.stderr.startswith("error: SMTP_HOST is not set")


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
