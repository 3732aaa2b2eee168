"""The e-mail settings: ``SMTP_*`` variables from the environment or ``.env``, checked before anything is sent.

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
the message). :func:`check_notify_setup` checks recipients and settings without connecting, for config validation.
"""

import ipaddress
import logging
import math
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.paths import ROOT_PATH

# A child of the project's logger: its warnings reach the console and the run's train.log like the run's own lines.
LOGGER = logging.getLogger("project.notify")

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_TIMEOUT = 10.0
# Loose on purpose (like the template's hook): one "@" and a dot in the domain catch typos, not every RFC corner.
_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


class SMTPConfigError(ValueError):
    """The e-mail settings or the recipients are wrong; found before anything is sent."""


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
