"""A real SMTP server for the e-mail tests (aiosmtpd on 127.0.0.1), with the settings and checks they share."""

import asyncio
import email
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from utils.notify.settings import SMTPSettings

USER = "bob"
PASSWORD = "s3cret-Pa55 word"  # distinctive, so that a leak is found by a plain substring search
SENDER = "runs@example.org"
RECIPIENT = "alice@example.org"


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


def forget_personal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own SMTP_* variables and .env away from a test (and from the tests' servers)."""
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


def _smtp_env(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SMTP_FROM", SENDER)
    monkeypatch.setenv("SMTP_TIMEOUT", "5")
