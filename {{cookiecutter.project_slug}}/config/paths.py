"""Global paths of the project: where data is read and logs and weights are written.

Each path can be moved with an environment variable (``DATA_DIR``, ``LOG_DIR``, ``WEIGHT_DIR``), e.g. to a big disk
or, in the tests, to a temporary folder. Folders are created when a run first writes into them, not at import.
"""

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_PATH = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GlobalConfig:
    """The three folders a project reads from and writes to."""

    ROOT_PATH: Path
    DATA_DIR: Path
    LOG_DIR: Path
    WEIGHT_DIR: Path

    def check_writable(self) -> None:
        """Create LOG_DIR and WEIGHT_DIR if needed and check that a run can write there, before it writes anything.

        Raises:
            PermissionError: one of them cannot be created or written, with a message naming it and what to do.
        """
        for name in ("LOG_DIR", "WEIGHT_DIR"):
            folder = getattr(self, name)
            if folder.exists() and not folder.is_dir():
                raise PermissionError(f"{name} {folder} is a file, not a folder; set {name} to a folder you can write")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise PermissionError(
                    f"{name} {folder} cannot be created ({err.strerror}); set {name} to a folder you can write"
                ) from None
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{name} {folder} is not writable; set {name} to a folder you can write")

    def run_log_dir(self, run_name: str) -> Path:
        """Return ``LOG_DIR/<run_name>``, created if needed."""
        return _created(self.LOG_DIR / run_name)

    def run_weight_dir(self, run_name: str) -> Path:
        """Return ``WEIGHT_DIR/<run_name>``, created if needed."""
        return _created(self.WEIGHT_DIR / run_name)


def _created(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def get_global_config() -> GlobalConfig:
    """Read the paths now, so a changed environment (a test, a notebook) is taken into account."""
    return GlobalConfig(
        ROOT_PATH=ROOT_PATH,
        DATA_DIR=_path_from_env("DATA_DIR", ROOT_PATH / "data"),
        LOG_DIR=_path_from_env("LOG_DIR", ROOT_PATH / "logs"),
        WEIGHT_DIR=_path_from_env("WEIGHT_DIR", ROOT_PATH / "weights"),
    )


GLOBAL_CONFIG = get_global_config()
