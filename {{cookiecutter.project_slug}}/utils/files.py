"""Files and folders of runs: run names, safe names, unique run folders, the latest run, atomic writes, locks."""

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

from filelock import FileLock, Timeout

from config.serialize import ConfigError


def safe_name(text: str) -> str:
    """Turn free text into a name that is safe in paths and URLs: letters, digits, ``-``, ``_`` and ``.``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-.")
    return name or "run"


def create_unique_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name``, or ``parent/name-2``, ``-3``... if it exists, and return it.

    Creating the folder is the reservation: two runs started in the same second cannot share a folder.
    """
    parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = parent / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = parent / f"{name}-{suffix}"


def latest_run_dir(parent: Path, required_file: str) -> Path | None:
    """The most recently started run folder in ``parent`` that holds ``required_file``, or None.

    Run names start with their start time (see make_run_name), so the latest run is the greatest name.
    """
    if not parent.is_dir():
        return None
    runs = sorted(path.parent for path in parent.glob(f"*/{required_file}"))
    return runs[-1] if runs else None


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path`` and, once the block succeeds, rename it over ``path``.

    A crash or a kill while writing leaves the previous file intact (a rename on one file system is atomic on
    POSIX and Windows); the data is flushed to disk before the rename, so a power cut cannot leave it empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it private (0600); a plain file would follow the umask
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def hold_lock(lock_path: Path, what: str) -> FileLock:
    """Take ``lock_path`` without waiting and write this process's pid to ``<lock_path>.pid``: one process trains
    ``what`` (a run, a fold) at a time, and a second one is told which process to wait for or stop.

    Raises:
        ConfigError: another process holds the lock, naming ``what`` and that process's pid.
    """
    lock, owner = FileLock(lock_path), lock_path.with_name(f"{lock_path.name}.pid")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid = owner.read_text(encoding="utf-8").strip() if owner.is_file() else "unknown"
        raise ConfigError(
            f"{what} is being trained by another process (pid {pid}); wait for it to end, or stop it"
        ) from None
    owner.write_text(f"{os.getpid()}\n", encoding="utf-8")
    return lock


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Run names: <YYYYmmdd-HHMMSS>_<session>_<routine>, sortable by start time and readable in a file browser.
TIME_FORMAT = "%Y%m%d-%H%M%S"


def make_run_name(session_name: str, routine: str, started_at: datetime | None = None) -> str:
    """Name a run from its start time, session and routine."""
    started_at = started_at or datetime.now()
    return f"{started_at.strftime(TIME_FORMAT)}_{safe_name(session_name)}_{safe_name(routine)}"
