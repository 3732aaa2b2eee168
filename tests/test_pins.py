"""The two constraint files are what scripts/update_pins.py (`make pins`) resolves them to: uv finds the pinned set
consistent for Python 3.11.5, with no platform pin (nvidia-*, triton) and torch without a local version.

It asks the package indexes (PyPI, and those of pip's configuration) for metadata: seconds, no install.
"""

import subprocess
import sys

from conftest import TEMPLATE_DIR

SCRIPT = TEMPLATE_DIR / "scripts" / "update_pins.py"


def test_constraint_files_are_a_resolution():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"make pins would change the pins:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.splitlines() == [
        "{{cookiecutter.project_slug}}/constraints.txt: unchanged",
        "constraints-template.txt: unchanged",
    ]
    pins = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "constraints.txt").read_text(encoding="utf-8")
    assert "torch==2.13.0\n" in pins
    assert not [line for line in pins.splitlines() if line.startswith(("nvidia-", "triton=", "cuda-"))]
