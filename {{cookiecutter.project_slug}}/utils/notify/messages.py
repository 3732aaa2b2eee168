"""What the e-mails say: a run's outcome (completed, failed, interrupted) and the ``--test`` message, as plain text.

Each function returns a :class:`Message` and sends nothing; :func:`utils.notify.smtp.notify_run` picks the message
for a run and sends it.
"""

import numbers
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from config.paths import ROOT_PATH
from utils.notify.settings import SMTPSettings


class Message(NamedTuple):
    """An e-mail to send: ``notifier.send(*message)``."""

    subject: str
    body: str
    attachments: tuple[Path, ...] = ()


class RunLike(Protocol):
    """What the messages read from a run: the fields of ``training.records.RunResult``."""

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
