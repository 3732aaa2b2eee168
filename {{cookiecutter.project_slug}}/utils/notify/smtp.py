"""E-mail a run's outcome through an SMTP server: settings from the environment, a notifier that never raises.

Settings come from environment variables, or from a ``.env`` file in the project root (``KEY=VALUE`` lines;
``.gitignore`` keeps it out of git); a variable set in the environment wins over the file:

==================  ===========================================================================================
``SMTP_HOST``       the mail server, e.g. ``smtp.example.org`` (required)
``SMTP_PORT``       default 587 for ``starttls``, 465 for ``ssl``, 25 for ``none``
``SMTP_SECURITY``   ``starttls`` (default), ``ssl`` (TLS from the first byte) or ``none`` (this machine only)
``SMTP_USER``       login name; no login when empty
``SMTP_PASSWORD``   never written to a log, an error message or a repr
``SMTP_FROM``       the sender address; defaults to ``SMTP_USER`` when that is an address
``SMTP_TIMEOUT``    seconds for the whole exchange with the server, default 10
``SMTP_CA_FILE``    PEM file of the CA (or the self-signed certificate) to trust instead of the system's CAs,
                    for a server with a private certificate
``SMTP_ENV_FILE``   another file to read instead of ``<project>/.env``
==================  ===========================================================================================

Check the settings with ``python -m utils.notify.smtp --test you@example.org`` (exit status 0 when the server took
the message). In code::

    notifier = SMTPNotifier(SMTPSettings.from_env(), "you@example.org")
    notifier.send("subject", "body", attachments=[run_dir / "curves.png"])  # True, or False and one warning

:func:`notify_run` does what a training run needs in one call: it picks the message for the run's status, sends it,
and turns every problem (settings included) into one warning line.
"""

import argparse
import base64
import ipaddress
import logging
import math
import mimetypes
import numbers
import os
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from config.paths import ROOT_PATH

# A child of the project's logger: its warnings reach the console and the run's train.log like the run's own lines.
LOGGER = logging.getLogger("project.notify")

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_TIMEOUT = 10.0
# How long the caller waits beyond the timeout for the sending thread to report its own error.
_GRACE_S = 0.2
# Loose on purpose (like the template's hook): one "@" and a dot in the domain catch typos, not every RFC corner.
_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


class SMTPConfigError(ValueError):
    """The e-mail settings or the recipients are wrong; found before anything is sent."""


class SMTPDeliveryError(RuntimeError):
    """The message was not delivered; the text says what failed and never holds the password."""


# ---------------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------------


def is_local_host(host: str) -> bool:
    """Whether ``host`` is this machine (localhost or a loopback address), the only place plain SMTP may go."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SMTPSettings:
    """Where and how to send e-mail. Checked on creation: a wrong value raises :class:`SMTPConfigError`.

    ``port`` None means the usual port of ``security``. ``password`` is left out of the repr.
    """

    host: str
    sender: str
    port: int | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    security: str = "starttls"
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise SMTPConfigError("SMTP_HOST is not set: name the mail server, e.g. SMTP_HOST=smtp.example.org")
        if self.security not in SECURITY_MODES:
            raise SMTPConfigError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, got {self.security!r}")
        if self.security == "none" and not is_local_host(self.host):
            raise SMTPConfigError(
                f"SMTP_SECURITY=none would send the message (and any password) unencrypted to {self.host}; it is "
                "only allowed for a server on this machine (localhost, 127.0.0.1, ::1): use starttls or ssl"
            )
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.security])  # frozen: set once, here
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise SMTPConfigError(f"SMTP_PORT must be a port number (1-65535), got {self.port!r}")
        if not (isinstance(self.timeout, int | float) and math.isfinite(self.timeout) and self.timeout > 0):
            raise SMTPConfigError(f"SMTP_TIMEOUT must be a number of seconds > 0, got {self.timeout!r}")
        if not _ADDRESS.fullmatch(self.sender or ""):
            raise SMTPConfigError(
                f"SMTP_FROM must be the sender's e-mail address (name@domain.tld), got {self.sender!r}"
                if self.sender
                else "SMTP_FROM is not set: give the sender's address, e.g. SMTP_FROM=runs@example.org"
            )
        if self.password and not self.user:
            raise SMTPConfigError("SMTP_PASSWORD is set but SMTP_USER is not: set the login name too")
        if self.ca_file is not None:
            if not Path(self.ca_file).is_file():
                raise SMTPConfigError(f"SMTP_CA_FILE {self.ca_file}: no such file")
            try:  # a broken file is a settings error now, not a TLS failure when the run ends hours later
                self.ssl_context()
            except (ssl.SSLError, OSError) as err:
                raise SMTPConfigError(f"SMTP_CA_FILE {self.ca_file}: not a PEM certificate ({err})") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> "SMTPSettings":
        """Read the ``SMTP_*`` variables from ``environ`` (default: ``os.environ``) over those of ``env_file``.

        ``env_file`` defaults to ``$SMTP_ENV_FILE``, else ``.env`` in the project root; a missing file is fine.
        """
        environ = os.environ if environ is None else environ
        if env_file is None:
            env_file = environ.get("SMTP_ENV_FILE") or ROOT_PATH / ".env"
        values = {key: value for key, value in read_env_file(env_file).items() if key.startswith("SMTP_")}
        # The real environment wins, even where it sets a variable to "" (as python-dotenv and docker do).
        values.update({key: value for key, value in environ.items() if key.startswith("SMTP_")})

        def get(name: str) -> str:
            return values.get(name, "").strip()

        user, port, timeout, ca_file = get("SMTP_USER"), get("SMTP_PORT"), get("SMTP_TIMEOUT"), get("SMTP_CA_FILE")
        return cls(
            host=get("SMTP_HOST"),
            port=_parse_number("SMTP_PORT", port, int) if port else None,
            user=user,
            # Not stripped: spaces at either end can be part of a password.
            password=values.get("SMTP_PASSWORD", ""),
            sender=get("SMTP_FROM") or (user if _ADDRESS.fullmatch(user) else ""),
            security=get("SMTP_SECURITY").lower() or "starttls",
            timeout=_parse_number("SMTP_TIMEOUT", timeout, float) if timeout else DEFAULT_TIMEOUT,
            ca_file=Path(ca_file).expanduser() if ca_file else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A context that checks the server's certificate and name: against ``ca_file`` if set, else the system CAs."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def describe(self) -> str:
        """One line for people: server, security, login and timeout (never the password)."""
        login = f"login as {self.user}" if self.user else "no login"
        ca = f", CA {self.ca_file}" if self.ca_file else ""
        return f"{self.host}:{self.port} ({self.security}, {login}, timeout {self.timeout:g} s{ca}), from {self.sender}"


def _parse_number(name: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise SMTPConfigError(f"{name} must be {expected}, got {text!r}") from None


def read_env_file(path: str | Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a ``.env`` file (empty if there is none).

    Understood: blank lines, ``# comments`` (whole lines, or after a space following an unquoted value), an
    ``export`` prefix, values in single quotes (taken literally) or double quotes (``\\"``, ``\\\\`` and ``\\n``
    escapes). A line that is none of these is skipped with a warning that gives its number but never its text,
    which may hold a password.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SMTPConfigError(f"{path}: cannot read the settings file ({err})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, equals, value = line.partition("=")
        key = key.strip()
        value = _env_value(value.strip()) if equals else None
        if not key.isidentifier() or value is None:
            LOGGER.warning("%s: line %d skipped (expected KEY=VALUE)", path, number)
            continue
        values[key] = value
    return values


def _env_value(text: str) -> str | None:
    """The value of one .env line, unquoted; None if a quote is not closed."""
    if not text or text[0] not in "\"'":
        # Unquoted: " #" starts a comment, so a "#" inside a value (a password) needs no quotes.
        return text.split(" #", 1)[0].split("\t#", 1)[0].rstrip()
    quote, chars, i = text[0], [], 1
    while i < len(text):
        char = text[i]
        if char == quote:
            rest = text[i + 1 :].strip()
            return "".join(chars) if not rest or rest.startswith("#") else None
        if quote == '"' and char == "\\" and i + 1 < len(text):
            i += 1
            chars.append({"n": "\n", "t": "\t"}.get(text[i], text[i]))
        else:
            chars.append(char)
        i += 1
    return None


def parse_recipients(value: str | Iterable[str]) -> list[str]:
    """Addresses from ``"a@b.org, c@d.org"`` or a list of them, in order, without repeats.

    Raises :class:`SMTPConfigError` if there is none or one is not an address.
    """
    items = [value] if isinstance(value, str) else list(value)
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SMTPConfigError(f"e-mail addresses must be strings, got {item!r}")
        addresses += [part for part in re.split(r"[,;\s]+", item) if part]
    if not addresses:
        raise SMTPConfigError("no e-mail address to notify")
    for address in addresses:
        if not _ADDRESS.fullmatch(address):
            raise SMTPConfigError(f"{address!r} is not an e-mail address (expected name@domain.tld)")
    return list(dict.fromkeys(addresses))


def check_notify_setup(recipients: Any, environ: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with notifying ``recipients`` (addresses, then the SMTP settings), or None if nothing is.

    Made for config validation: it reads the settings but connects to nothing.
    """
    if not recipients:
        return None
    try:
        parse_recipients(recipients)
        SMTPSettings.from_env(environ)
    except SMTPConfigError as err:
        return str(err)
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------------------------------

# Where a conversation with the server stands, as the failure messages put it.
_STAGE_TEXT = {
    "connect": "while connecting",
    "greeting": "before its greeting",
    "starttls": "during STARTTLS",
    "login": "during login",
    "send": "while sending the message",
}


class _Conversation:
    """One exchange with the server, run in a thread so that no step (DNS included) can hold the caller."""

    def __init__(self, settings: SMTPSettings, message: EmailMessage, recipients: list[str]) -> None:
        self.settings, self.message, self.recipients = settings, message, recipients
        self.deadline = time.monotonic() + settings.timeout
        self.stage = "connect"
        self.error: Exception | None = None
        self.refused: dict[str, tuple[int, bytes]] = {}
        self.accepted = False
        self.abandoned = False  # set by the caller once it stopped waiting: do not send after a reported failure

    def _time_left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left

    def _arm(self, client: smtplib.SMTP) -> None:
        # smtplib's timeout holds per socket call; re-arming with the time left bounds the exchange as a whole.
        if client.sock is not None:
            client.sock.settimeout(self._time_left())

    def run(self) -> None:
        """Talk to the server; any failure is kept in ``self.error`` for the caller to describe."""
        try:
            self._talk()
        except Exception as err:  # pylint: disable=broad-exception-caught  # the caller reports every failure
            self.error = err

    def _talk(self) -> None:
        settings = self.settings
        # Connecting in the constructor (not with connect() later) also tells smtplib the name that the server's
        # certificate must carry. The socket gets the time left, for connecting, the TLS handshake of SMTP_SSL and
        # the server's greeting alike.
        self.stage = "connect"
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=self._time_left(), context=settings.ssl_context()
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=self._time_left())
        try:
            if settings.security == "starttls":
                self.stage = "starttls"
                self._arm(client)
                client.starttls(context=settings.ssl_context())
            if settings.user:
                self.stage = "login"
                self._arm(client)
                client.login(settings.user, settings.password)
            if self.abandoned:
                return
            self.stage = "send"
            self._arm(client)
            self.refused = client.send_message(self.message, from_addr=settings.sender, to_addrs=self.recipients)
            self.accepted = True
            self.stage = "quit"
            try:
                self._arm(client)
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the server has the message; a lost goodbye changes nothing
        finally:
            client.close()


class SMTPNotifier:
    """Sends plain-text e-mails with attachments to a fixed list of recipients.

    :meth:`send` never raises and never waits longer than ``settings.timeout`` (plus a fraction of a second):
    a failure becomes one warning line and a False return, so a run's result does not depend on the mail server.
    :meth:`deliver` is the same but raises :class:`SMTPDeliveryError`, for callers that show the reason themselves.
    """

    def __init__(self, settings: SMTPSettings, recipients: str | Iterable[str]) -> None:
        self.settings = settings
        self.recipients = parse_recipients(recipients)

    @classmethod
    def from_env(
        cls,
        recipients: str | Iterable[str],
        environ: Mapping[str, str] | None = None,
        env_file: str | Path | None = None,
    ) -> "SMTPNotifier":
        """A notifier with :meth:`SMTPSettings.from_env`; raises :class:`SMTPConfigError` on bad settings."""
        return cls(SMTPSettings.from_env(environ, env_file), recipients)

    def __repr__(self) -> str:
        return f"SMTPNotifier({self.settings!r}, recipients={self.recipients!r})"

    def build_message(self, subject: str, body: str, attachments: Iterable[str | Path] = ()) -> EmailMessage:
        """The e-mail as it will be sent: plain-text body, each attachment with the MIME type of its name."""
        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())  # a header must stay on one line
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2])
        # Non-ASCII text goes quoted-printable: raw 8-bit bodies need the server's 8BITMIME, which not all offer.
        message.set_content(body, cte=None if body.isascii() else "quoted-printable")
        for attachment in attachments:
            path = Path(attachment)
            try:
                data = path.read_bytes()
            except OSError as err:
                raise SMTPDeliveryError(f"cannot attach {path} ({err.strerror or err})") from None
            mime_type, encoding = mimetypes.guess_type(path.name)
            if mime_type is None or encoding is not None:  # unknown, or compressed (.gz): send the bytes as they are
                mime_type = "application/octet-stream"
            maintype, subtype = mime_type.split("/", 1)
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
        return message

    def deliver(self, subject: str, body: str, attachments: Iterable[str | Path] = ()) -> dict[str, str]:
        """Send the message or raise :class:`SMTPDeliveryError` saying why not.

        Returns the recipients the server refused while it took the message for the others (address -> reply).
        """
        message = self.build_message(subject, body, attachments)
        conversation = _Conversation(self.settings, message, self.recipients)
        worker = threading.Thread(target=conversation.run, name="smtp-notifier", daemon=True)
        worker.start()
        worker.join(max(0.0, conversation.deadline - time.monotonic()) + _GRACE_S)
        if worker.is_alive() and not conversation.accepted:
            conversation.abandoned = True
            raise SMTPDeliveryError(self._scrub(self._no_answer(conversation.stage)))
        if conversation.error is not None and not conversation.accepted:
            raise SMTPDeliveryError(self._scrub(self._describe(conversation.error, conversation.stage)))
        return {address: self._scrub(_reply_text(*reply)) for address, reply in conversation.refused.items()}

    def send(self, subject: str, body: str, attachments: Iterable[str | Path] = ()) -> bool:
        """Send the message: True once the server took it; otherwise one warning line and False. Never raises."""
        try:
            refused = self.deliver(subject, body, attachments)
        except SMTPDeliveryError as err:
            LOGGER.warning("e-mail not sent: %s", err)
            return False
        except Exception as err:  # pylint: disable=broad-exception-caught  # a notification must not end a run
            LOGGER.warning("e-mail not sent: %s", self._scrub(f"{type(err).__name__}: {err}"))
            return False
        if refused:
            LOGGER.warning(
                "e-mail not delivered to %s", "; ".join(f"{address} ({reply})" for address, reply in refused.items())
            )
        delivered = [address for address in self.recipients if address not in refused]
        LOGGER.info("e-mail sent to %s: %s", ", ".join(delivered), " ".join(subject.split()))
        return True

    # -- failure texts -------------------------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _port_hint(self) -> str:
        """The classic mix-up: implicit TLS (465) against STARTTLS (587, 25)."""
        security, port = self.settings.security, self.settings.port
        if security != "ssl" and port == 465:
            return "; port 465 usually needs SMTP_SECURITY=ssl"
        if security == "ssl" and port in (25, 587):
            return f"; port {port} usually needs SMTP_SECURITY=starttls"
        return ""

    def _no_answer(self, stage: str) -> str:
        return (
            f"no answer from {self._where} within {self.settings.timeout:g} s "
            f"({_STAGE_TEXT.get(stage, stage)}{self._port_hint()})"
        )

    # One return per kind of failure: a flat list reads better than the nesting that would satisfy pylint.
    def _describe(self, err: Exception, stage: str) -> str:  # pylint: disable=too-many-return-statements,too-many-branches
        """One line on what failed, for people: the server, the step and the server's own words."""
        where, stage_text = self._where, _STAGE_TEXT.get(stage, stage)
        # Subclasses before their bases: SSLCertVerificationError < SSLError < OSError, TimeoutError < OSError.
        if isinstance(err, socket.gaierror):
            return f"cannot find the mail server {self.settings.host} ({err.strerror or err})"
        if isinstance(err, TimeoutError):
            return self._no_answer(stage)
        if isinstance(err, smtplib.SMTPServerDisconnected) and isinstance(err.__context__, TimeoutError):
            # smtplib turns a reply that never came into "Connection unexpectedly closed: timed out"; while
            # connecting, that means the connection was open and the server did not greet.
            return self._no_answer("greeting" if stage == "connect" else stage)
        if isinstance(err, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {where} is not trusted ({err.verify_message}); if the server uses a private "
                "CA or a self-signed certificate, set SMTP_CA_FILE to that certificate (PEM)"
            )
        if isinstance(err, ssl.SSLError):
            return f"TLS with {where} failed {stage_text} ({err.reason or err}{self._port_hint()})"
        if isinstance(err, smtplib.SMTPAuthenticationError):
            return f"login as {self.settings.user} refused by the server ({_reply_text(err.smtp_code, err.smtp_error)})"
        if isinstance(err, smtplib.SMTPNotSupportedError):
            if stage == "starttls":
                return f"{where} does not offer STARTTLS; use SMTP_SECURITY=ssl (usually port 465) or another server"
            return f"{where} does not offer a login (AUTH) {stage_text} ({err}); check SMTP_SECURITY and SMTP_USER"
        if isinstance(err, smtplib.SMTPRecipientsRefused):
            refused = "; ".join(f"{address} ({_reply_text(*reply)})" for address, reply in err.recipients.items())
            return f"every recipient was refused: {refused}"
        if isinstance(err, smtplib.SMTPSenderRefused):
            return f"sender {self.settings.sender} refused by the server ({_reply_text(err.smtp_code, err.smtp_error)})"
        if isinstance(err, smtplib.SMTPResponseException):
            return f"{where} answered {_reply_text(err.smtp_code, err.smtp_error)} {stage_text}"
        if isinstance(err, smtplib.SMTPServerDisconnected):
            return f"{where} closed the connection {stage_text}{self._port_hint()}"
        if isinstance(err, OSError) and stage == "connect":
            return f"cannot connect to {where} ({err.strerror or err})"
        if isinstance(err, OSError):
            return f"connection to {where} failed {stage_text} ({err.strerror or err})"
        return f"{type(err).__name__} {stage_text}: {err}"

    def _scrub(self, text: str) -> str:
        """Mask the password, plain or base64 as AUTH sends it, should a server or library ever echo it."""
        password = self.settings.password
        if not password:
            return text
        forms = {password, base64.b64encode(password.encode()).decode()}
        forms.add(base64.b64encode(f"\0{self.settings.user}\0{password}".encode()).decode())
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text


def _reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(f"{code} {text}".split())


# ---------------------------------------------------------------------------------------------------------------------
# The messages a run sends
# ---------------------------------------------------------------------------------------------------------------------


class Message(NamedTuple):
    """An e-mail to send: ``notifier.send(*message)``."""

    subject: str
    body: str
    attachments: tuple[Path, ...] = ()


class RunLike(Protocol):
    """What the messages read from a run: the fields of ``training.common.RunResult``."""

    run_name: str
    status: str
    run_dir: Path
    weight_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best: dict[str, float]
    final: dict[str, float]
    error: str | None


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    # Losses and metrics read best with fixed decimals, learning rates with a power of ten.
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.3e}"


def _cell(column: str, value: Any) -> str:
    # history.csv read back by pandas (after a resume) may hold epochs as floats; they are still whole numbers.
    if column == "epoch" and isinstance(value, numbers.Real) and float(value).is_integer():
        value = int(value)
    return _number(value)


def format_table(rows: Sequence[Mapping[str, Any]], max_rows: int = 20) -> str:
    """An aligned text table of the last ``max_rows`` rows (the columns of the first row, in its order)."""
    if not rows:
        return "(no epoch completed)"
    columns = list(rows[0])
    shown = list(rows[-max_rows:])
    cells = [columns] + [[_cell(column, row.get(column, "")) for column in columns] for row in shown]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    if len(rows) > len(shown):
        lines.insert(1, f"... {len(rows) - len(shown)} earlier epochs not shown")
    return "\n".join(lines)


def _metric_lines(values: Mapping[str, float]) -> list[str]:
    width = max((len(name) for name in values), default=0)
    return [f"  {name.ljust(width)}  {_number(value)}" for name, value in values.items()]


def _detail_lines(details: Mapping[str, Any] | None) -> list[str]:
    if not details:
        return []
    width = max(len("Run folder"), *(len(str(key)) for key in details))  # aligned with the lines above them
    return [f"{str(key).ljust(width)}  {value}" for key, value in details.items()]


def _curves(result: RunLike) -> tuple[Path, ...]:
    curves = Path(result.run_dir) / "curves.png"
    return (curves,) if curves.is_file() else ()


def run_completed_message(
    result: RunLike,
    history: Sequence[Mapping[str, Any]] | str = (),
    *,
    metric: str | None = None,
    details: Mapping[str, Any] | None = None,
    project: str = ROOT_PATH.name,
    max_rows: int = 20,
) -> Message:
    """The e-mail of a completed run: best and final metrics, the epoch table, where its files are, curves.png.

    ``history`` is the run's rows (``RunRecorder.history``) or a table already written as text; ``metric`` is the
    checkpoint metric, named in the subject; ``details`` are extra ``name: value`` lines (routine, device, duration).
    """
    headline = f"[{project}] run {result.run_name} completed after {result.epochs_completed} epochs"
    if metric and metric in result.best:
        headline += f": best {metric} {_number(result.best[metric])} (epoch {result.best_epoch})"
    lines = [
        f"Run {result.run_name} completed after {result.epochs_completed} epochs.",
        "",
        f"Run folder  {result.run_dir}",
        f"Weights     {result.weight_dir}",
        *_detail_lines(details),
        "",
    ]
    if result.best:
        lines += [f"Best epoch {result.best_epoch}" + (f" (by {metric})" if metric else "") + ":"]
        lines += _metric_lines(result.best) + [""]
    if result.final:
        lines += [f"Final epoch {result.epochs_completed}:", *_metric_lines(result.final), ""]
    table = history if isinstance(history, str) else format_table(history, max_rows) if history else ""
    if table:
        lines += ["History:", table, ""]
    attachments = _curves(result)
    if attachments:
        lines.append("The learning curves are attached (curves.png).")
    return Message(headline, "\n".join(lines).rstrip() + "\n", attachments)


def run_failed_message(
    result: RunLike,
    log_tail: str = "",
    *,
    details: Mapping[str, Any] | None = None,
    project: str = ROOT_PATH.name,
    resume: str | None = None,
) -> Message:
    """The e-mail of a failed or interrupted run: the error, how to resume, and the last lines of its log.

    ``resume``: the command that continues the run (default: ``python train.py --resume <run>``).
    """
    error = result.error or "no error message"
    if result.status == "interrupted":
        headline = f"[{project}] run {result.run_name} interrupted after {result.epochs_completed} epochs"
    else:
        short = error if len(error) <= 100 else error[:97] + "..."
        headline = f"[{project}] run {result.run_name} {result.status}: {short}"
    lines = [
        f"Run {result.run_name} {result.status} after {result.epochs_completed} completed epochs.",
        "",
        f"Error       {error}",
        f"Run folder  {result.run_dir}",
        f"Weights     {result.weight_dir}",
        *_detail_lines(details),
        "",
    ]
    if (Path(result.weight_dir) / "last.pt").is_file():
        lines += [
            f"The checkpoint of epoch {result.epochs_completed} is kept; continue the run with:",
            f"  {resume or f'python train.py --resume {result.run_name}'}",
            "",
        ]
    if result.best:
        lines += [f"Best epoch {result.best_epoch}:", *_metric_lines(result.best), ""]
    if log_tail.strip():
        lines += ["Last lines of train.log:", "", log_tail.rstrip(), ""]
    return Message(headline, "\n".join(lines).rstrip() + "\n", _curves(result))


def read_log_tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file such as train.log ("" if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return "".join(deque(file, maxlen=lines))
    except OSError:
        return ""


def notify_run(
    recipients: str | Iterable[str],
    result: RunLike,
    history: Sequence[Mapping[str, Any]] | str = (),
    *,
    log_file: str | Path | None = None,
    metric: str | None = None,
    details: Mapping[str, Any] | None = None,
    settings: SMTPSettings | None = None,
    resume: str | None = None,
) -> bool:
    """E-mail the outcome of a run: the completed message, or the failed one with the end of ``log_file``.

    ``log_file`` defaults to the run's train.log, ``settings`` to :meth:`SMTPSettings.from_env`. Never raises:
    bad settings and failed sending each give one warning line and False.
    """
    try:
        notifier = SMTPNotifier(settings or SMTPSettings.from_env(), recipients)
        if result.status == "completed":
            message = run_completed_message(result, history, metric=metric, details=details)
        else:
            log_tail = read_log_tail(log_file if log_file is not None else Path(result.run_dir) / "train.log")
            message = run_failed_message(result, log_tail, details=details, resume=resume)
    except SMTPConfigError as err:
        LOGGER.warning("e-mail not sent: %s", err)
        return False
    # This runs while a failed run is being reported: an error here must not hide the run's own error.
    except Exception as err:  # pylint: disable=broad-exception-caught
        LOGGER.warning("e-mail not sent: cannot write the message (%s: %s)", type(err).__name__, err)
        return False
    return notifier.send(*message)


def connection_test_message(settings: SMTPSettings, project: str = ROOT_PATH.name) -> Message:
    """The message of ``--test``: says where it came from, so that a stray one is easy to place."""
    sent_at = datetime.now().isoformat(timespec="seconds")
    body = (
        f"This is a test message of {project}, sent by `python -m utils.notify.smtp --test`.\n\n"
        f"Server  {settings.describe()}\n"
        f"Host    {socket.gethostname()}\n"
        f"Time    {sent_at}\n\n"
        "Training runs started with --notify (or the NOTIFY config key) will send their results the same way.\n"
    )
    return Message(f"[{project}] test message", body)


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m utils.notify.smtp --test ADDRESS``: send a test message; exit status 0 if it was sent, else 1."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.notify.smtp",
        description="Check the e-mail settings (SMTP_* variables, .env) by sending a test message.",
    )
    parser.add_argument(
        "--test", metavar="ADDRESS", required=True, help="send a test message to ADDRESS (several: comma-separated)"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="read SMTP_* settings from this file (default: $SMTP_ENV_FILE, else .env in the project root); "
        "variables set in the environment win",
    )
    args = parser.parse_args(argv)
    try:
        notifier = SMTPNotifier.from_env(args.test, env_file=args.env_file)
    except SMTPConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    recipients = ", ".join(notifier.recipients)
    print(f"sending a test message to {recipients} via {notifier.settings.describe()}", flush=True)
    try:
        refused = notifier.deliver(*connection_test_message(notifier.settings))
    except SMTPDeliveryError as err:
        print(f"error: e-mail not sent: {err}", file=sys.stderr)
        return 1
    for address, reply in refused.items():
        print(f"error: the server refused {address} ({reply})", file=sys.stderr)
    if refused:
        return 1
    print(f"ok: the server accepted the message for {recipients}; if it does not arrive, look in the spam folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
