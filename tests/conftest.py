"""Helpers shared by the template's tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent

# An activated venv, a PYTHON for make, or paths set by the caller would change what the baked project does; the
# variables of an outer make (CI runs `make test`) would make the baked project's make print "Entering directory".
LEAKY_VARIABLES = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHON", "VENV", "DATA_DIR", "LOG_DIR", "WEIGHT_DIR"}
LEAKY_VARIABLES |= {"MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}


def pytest_configure(config):
    # pytest-cookies bakes the template given by --template, "." by default: make that the repository root
    # whatever folder pytest was started from.
    if not (Path(config.option.template) / "cookiecutter.json").is_file():
        config.option.template = str(TEMPLATE_DIR)


def clean_env() -> dict[str, str]:
    """This process's environment without what would leak the template's venv or paths into a baked project."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_VARIABLES}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command and fail the test with its output when it exits non-zero."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode} in {cwd}\n"
        f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
    )
    return proc


def normalise_pin(requirement: str) -> str:
    """'Jinja2==3.1.6' -> 'jinja2==3.1.6', 'torch==2.13.0+cpu' -> 'torch==2.13.0' (PEP 503 names, no local tag)."""
    name, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower().strip()}=={version.split('+')[0].strip()}"
