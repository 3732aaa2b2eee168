"""Send e-mail through an SMTP server: a notifier that never raises, a run's outcome in one call, ``--test``.

The settings are the ``SMTP_*`` variables of :mod:`utils.notify.settings`. Check them with ``python -m
utils.notify.smtp --test you@example.org`` (exit status 0 when the server took the message). In code::

    notifier = SMTPNotifier(SMTPSettings.from_env(), "you@example.org")
    notifier.send("subject", "body", attachments=[run_dir / "curves.png"])  # True, or False and one warning

:func:`notify_run` does what a training run needs in one call: it picks the message for the run's status, sends it,
and turns every problem (settings included) into one warning line.
"""

import argparse
import mimetypes
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from utils.notify.conversation import Conversation, describe_failure, no_answer, reply_text, scrub_password
from utils.notify.messages import (
    RunLike,
    connection_test_message,
    read_log_tail,
    run_completed_message,
    run_failed_message,
)
from utils.notify.settings import LOGGER, SMTPConfigError, SMTPSettings, parse_recipients

# How long the caller waits beyond the timeout for the sending thread to report its own error.
_GRACE_S = 0.2


class SMTPDeliveryError(RuntimeError):
    """The message was not delivered; the text says what failed and never holds the password."""


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
        conversation = Conversation(self.settings, message, self.recipients)
        worker = threading.Thread(target=conversation.run, name="smtp-notifier", daemon=True)
        worker.start()
        worker.join(max(0.0, conversation.deadline - time.monotonic()) + _GRACE_S)
        if worker.is_alive() and not conversation.accepted:
            conversation.abandoned = True
            raise SMTPDeliveryError(self._scrub(no_answer(self.settings, conversation.stage)))
        if conversation.error is not None and not conversation.accepted:
            raise SMTPDeliveryError(
                self._scrub(describe_failure(self.settings, conversation.error, conversation.stage))
            )
        return {address: self._scrub(reply_text(*reply)) for address, reply in conversation.refused.items()}

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

    def _scrub(self, text: str) -> str:
        """``text`` with the password masked (see :func:`scrub_password`)."""
        return scrub_password(self.settings, text)


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
