"""The e-mail notifier against a real SMTP server (aiosmtpd on 127.0.0.1): delivery, TLS, login, every failure,
and ``python -m utils.notify.smtp --test``."""

import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from smtp_server import (
    PASSWORD,
    RECIPIENT,
    SENDER,
    USER,
    Inbox,
    _authenticator,
    _body,
    _free_port,
    _settings,
    _smtp_env,
    _warnings,
    forget_personal_settings,
    smtp_server,
)

from utils.notify.smtp import SMTPDeliveryError, SMTPNotifier


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
    forget_personal_settings(monkeypatch)


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


# ---------------------------------------------------------------------------------------------------------------------
# python -m utils.notify.smtp --test
# ---------------------------------------------------------------------------------------------------------------------


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
