"""Follow a new user from a fresh machine: bake, `make env-dev`, `make train`, `make test`, `make lint`.

Everything goes through the project's Makefile alone, in the venv it creates. Slow (minutes): the venv is created
from scratch and uv (tools/install.py) really installs the pinned packages.
"""

import sys
import time

import pandas as pd
import pytest
from conftest import TEMPLATE_DIR, clean_env, normalise_pin, run

pytestmark = pytest.mark.slow


def test_new_user(tmp_path):
    # As on a fresh machine: the defaults, no user cookiecutter config.
    bake = [sys.executable, "-m", "cookiecutter", "--no-input", "--default-config", "-o", str(tmp_path)]
    run([*bake, str(TEMPLATE_DIR)], cwd=tmp_path, timeout=120)
    project = tmp_path / "segmentation_project"
    env = clean_env()  # nothing of this venv: the project's Makefile must build its own

    start = time.monotonic()
    first = run(["make", "env-dev"], cwd=project, timeout=1800, env=env)
    print(f"make env-dev: {time.monotonic() - start:.1f} s")
    python = project / ".venv" / "bin" / "python"
    assert python.is_file()
    assert "installing with pip instead" not in first.stderr  # uv did it, from pip's configuration
    assert (project / ".venv" / "bin" / "uv").is_file()

    # Installed again with nothing changed: make finds the venv up to date and no installer runs.
    start = time.monotonic()
    again = run(["make", "env-dev"], cwd=project, timeout=120, env=env)
    assert time.monotonic() - start < 10
    assert "tools/install.py" not in again.stdout
    assert "source .venv/bin/activate" in again.stdout

    # The venv is complete (pip finds no broken or missing dependency) and every package in it is one that
    # constraints.txt pins, at that version: no dependency slipped in unpinned.
    run([str(python), "-m", "pip", "check"], cwd=project, timeout=120, env=env)
    pins = {normalise_pin(line) for line in (project / "constraints.txt").read_text(encoding="utf-8").splitlines()}
    installed = run([str(python), "-m", "pip", "freeze"], cwd=project, timeout=120, env=env).stdout.splitlines()
    unpinned = [line for line in installed if normalise_pin(line) not in pins]
    assert unpinned == [], f"installed but not pinned in constraints.txt: {unpinned}"

    start = time.monotonic()
    run(["make", "train", "ARGS=--epochs 1"], cwd=project, timeout=900, env=env)
    print(f"make train ARGS='--epochs 1': {time.monotonic() - start:.1f} s")

    experiments = pd.read_csv(project / "logs" / "experiments.csv")
    assert len(experiments) == 1
    row = experiments.iloc[0]
    assert row["status"] == "completed"
    assert row["routine"] == "pytorch"
    run_name = row["run_name"]
    for path in [
        f"logs/{run_name}/config.json",
        f"logs/{run_name}/history.csv",
        f"weights/{run_name}/best.pt",
        f"weights/{run_name}/last.pt",
    ]:
        assert (project / path).is_file(), f"{path} is missing"
    assert len(pd.read_csv(project / "logs" / run_name / "history.csv")) == 1

    # The project's own checks, as its README tells a new user to run them: the tests pass, ruff and pylint are clean.
    for target, timeout in (("test", 1800), ("lint", 1800)):
        start = time.monotonic()
        run(["make", target], cwd=project, timeout=timeout, env=env)
        print(f"make {target}: {time.monotonic() - start:.1f} s")
