"""E-mail when a run ends (use_smtp_notifications): the NOTIFY key, train.py's --notify, and the hook that sends.

The sending is utils/notify/; the server's settings come from the SMTP_* environment variables (or .env).
"""

import argparse
from typing import Any

from config.schema import Key
from training.checkpoint import resume_command
from utils.notify.settings import check_notify_setup
from utils.notify.smtp import notify_run


def _addresses(value: Any) -> str | None:
    return None if not value else check_notify_setup(value)


CONFIG_KEYS = {
    "NOTIFY": Key(
        "e-mail address(es) told when the run ends or fails (SMTP_* environment variables)", _addresses, None
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--notify ADDRESS."""
    parser.add_argument(
        "--notify",
        metavar="ADDRESS",
        default=None,
        help="e-mail the outcome to ADDRESS (comma-separated for several); shortcut for --set NOTIFY=...",
    )


def apply_arguments(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """--notify sets NOTIFY."""
    if args.notify is not None:
        config["NOTIFY"] = args.notify


class NotifyHook:
    """Sends the run's outcome once its files are written; a failure to send is one warning, never an error."""

    def __init__(self, recipients: Any) -> None:
        self.recipients = recipients

    def on_finish(self, run: Any, result: Any) -> None:
        """E-mail the completed, failed or interrupted run."""
        details = {"session": run.config["SESSION_NAME"], "routine": run.routine, "device": str(run.device)}
        history = run.recorder.history
        resume = resume_command(run.routine, result.run_name)
        notify_run(
            self.recipients, result, history, metric=run.config["CHECKPOINT_METRIC"], details=details, resume=resume
        )


def make_hook(config: dict[str, Any]) -> NotifyHook | None:
    """The hook when NOTIFY names someone."""
    return NotifyHook(config["NOTIFY"]) if config["NOTIFY"] else None
