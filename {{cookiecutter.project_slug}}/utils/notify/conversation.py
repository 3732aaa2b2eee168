"""One exchange with the SMTP server, in a thread and within the timeout, and what failed told in one line.

:class:`Conversation` connects, secures, logs in and sends; :func:`describe_failure` and :func:`no_answer` turn
what stopped it into a sentence for people (the server, the step, the server's own words, a hint), and
:func:`scrub_password` masks the password should any text ever hold it.
"""

import base64
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage

from utils.notify.settings import SMTPSettings

# Where a conversation with the server stands, as the failure messages put it.
_STAGE_TEXT = {
    "connect": "while connecting",
    "greeting": "before its greeting",
    "starttls": "during STARTTLS",
    "login": "during login",
    "send": "while sending the message",
}


class Conversation:
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


def _where(settings: SMTPSettings) -> str:
    return f"{settings.host}:{settings.port}"


def _port_hint(settings: SMTPSettings) -> str:
    """The classic mix-up: implicit TLS (465) against STARTTLS (587, 25)."""
    security, port = settings.security, settings.port
    if security != "ssl" and port == 465:
        return "; port 465 usually needs SMTP_SECURITY=ssl"
    if security == "ssl" and port in (25, 587):
        return f"; port {port} usually needs SMTP_SECURITY=starttls"
    return ""


def no_answer(settings: SMTPSettings, stage: str) -> str:
    """No answer from the server within the timeout, at ``stage`` of the conversation."""
    return (
        f"no answer from {_where(settings)} within {settings.timeout:g} s "
        f"({_STAGE_TEXT.get(stage, stage)}{_port_hint(settings)})"
    )


# One return per kind of failure: a flat list reads better than the nesting that would satisfy pylint.
def describe_failure(settings: SMTPSettings, err: Exception, stage: str) -> str:  # pylint: disable=too-many-return-statements,too-many-branches
    """One line on what failed, for people: the server, the step and the server's own words."""
    where, stage_text = _where(settings), _STAGE_TEXT.get(stage, stage)
    # Subclasses before their bases: SSLCertVerificationError < SSLError < OSError, TimeoutError < OSError.
    if isinstance(err, socket.gaierror):
        return f"cannot find the mail server {settings.host} ({err.strerror or err})"
    if isinstance(err, TimeoutError):
        return no_answer(settings, stage)
    if isinstance(err, smtplib.SMTPServerDisconnected) and isinstance(err.__context__, TimeoutError):
        # smtplib turns a reply that never came into "Connection unexpectedly closed: timed out"; while
        # connecting, that means the connection was open and the server did not greet.
        return no_answer(settings, "greeting" if stage == "connect" else stage)
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of {where} is not trusted ({err.verify_message}); if the server uses a private "
            "CA or a self-signed certificate, set SMTP_CA_FILE to that certificate (PEM)"
        )
    if isinstance(err, ssl.SSLError):
        return f"TLS with {where} failed {stage_text} ({err.reason or err}{_port_hint(settings)})"
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return f"login as {settings.user} refused by the server ({reply_text(err.smtp_code, err.smtp_error)})"
    if isinstance(err, smtplib.SMTPNotSupportedError):
        if stage == "starttls":
            return f"{where} does not offer STARTTLS; use SMTP_SECURITY=ssl (usually port 465) or another server"
        return f"{where} does not offer a login (AUTH) {stage_text} ({err}); check SMTP_SECURITY and SMTP_USER"
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{address} ({reply_text(*reply)})" for address, reply in err.recipients.items())
        return f"every recipient was refused: {refused}"
    if isinstance(err, smtplib.SMTPSenderRefused):
        return f"sender {settings.sender} refused by the server ({reply_text(err.smtp_code, err.smtp_error)})"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{where} answered {reply_text(err.smtp_code, err.smtp_error)} {stage_text}"
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection {stage_text}{_port_hint(settings)}"
    if isinstance(err, OSError) and stage == "connect":
        return f"cannot connect to {where} ({err.strerror or err})"
    if isinstance(err, OSError):
        return f"connection to {where} failed {stage_text} ({err.strerror or err})"
    return f"{type(err).__name__} {stage_text}: {err}"


def scrub_password(settings: SMTPSettings, text: str) -> str:
    """Mask the password, plain or base64 as AUTH sends it, should a server or library ever echo it."""
    password = settings.password
    if not password:
        return text
    forms = {password, base64.b64encode(password.encode()).decode()}
    forms.add(base64.b64encode(f"\0{settings.user}\0{password}".encode()).decode())
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def reply_text(code: int, text: bytes | str) -> str:
    """A server's reply (code and text) on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(f"{code} {text}".split())
