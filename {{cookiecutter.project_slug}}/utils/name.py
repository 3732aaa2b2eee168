"""Run names: ``<YYYYmmdd-HHMMSS>_<session>_<routine>``, sortable by start time and readable in a file browser."""

from datetime import datetime

from utils.path import safe_name

TIME_FORMAT = "%Y%m%d-%H%M%S"


def make_run_name(session_name: str, routine: str, started_at: datetime | None = None) -> str:
    """Name a run from its start time, session and routine."""
    started_at = started_at or datetime.now()
    return f"{started_at.strftime(TIME_FORMAT)}_{safe_name(session_name)}_{safe_name(routine)}"
