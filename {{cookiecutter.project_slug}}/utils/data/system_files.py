"""Which files in a data folder are the system's, not data: the one rule that training, evaluation and predict apply.

A name starting with ``.`` is hidden (macOS writes ``._<name>`` AppleDouble files beside every file it copies to a
non-Mac disk, and ``.DS_Store``; ``.Trash``, ``.ipynb_checkpoints``), and a few folders hold copies or thumbnails
of the data under the data's own names: Synology's ``@eaDir``, QNAP's ``@Recycle`` and ``@Recently-Snapshot``,
``__MACOSX`` from a zip made on a Mac, Windows' ``$RECYCLE.BIN`` and ``System Volume Information``, Synology's
``#recycle``, ``lost+found``. Torch-free, so that the ONNX inference path can use it.
"""

from collections.abc import Sequence
from pathlib import Path

SYSTEM_NAMES = frozenset(
    name.lower()
    for name in (
        "@eaDir",
        "@Recycle",
        "@Recently-Snapshot",
        "#recycle",
        "__MACOSX",
        "$RECYCLE.BIN",
        "System Volume Information",
        "lost+found",
        "Thumbs.db",
        "desktop.ini",
    )
)
SHOWN = 3  # names listed in the line that counts the skipped files


def is_system_file(relative: str | Path) -> bool:
    """Whether a path, relative to the folder that was searched, is hidden or the system's: any of its parts
    starts with ``.`` or is one of ``SYSTEM_NAMES`` (case-insensitive). The folder itself is the user's choice and
    is not judged (``~/.cache/tiles`` holds data when the user names it)."""
    return any(part.startswith(".") or part.lower() in SYSTEM_NAMES for part in Path(relative).parts)


def skipped_line(skipped: Sequence[str | Path], where: str = "") -> str:
    """The one line that counts skipped files: ``skipped 2 hidden or system files in <where> (._a.png, ...)``."""
    names = ", ".join(str(path) for path in skipped[:SHOWN]) + (", ..." if len(skipped) > SHOWN else "")
    files = "file" if len(skipped) == 1 else "files"
    return f"skipped {len(skipped)} hidden or system {files}{f' in {where}' if where else ''} ({names})"
