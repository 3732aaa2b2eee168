"""Path helpers: safe names, unique run folders, finding the latest run."""

import re
from pathlib import Path


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

    Run names start with their start time (see utils.name), so the latest run is the greatest name.
    """
    if not parent.is_dir():
        return None
    runs = sorted(path.parent for path in parent.glob(f"*/{required_file}"))
    return runs[-1] if runs else None
