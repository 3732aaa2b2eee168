"""The generated project's environments: a venv by default, conda on request, one installer and one set of pins.

No conda channel is reachable where these tests run, so a real conda environment is never created here: the conda
path is checked with make itself (`make -n` prints the commands it would run; a real `make` run without conda on
the PATH gives the one-line error) and by reading environment.yml for every combination. The installer itself
(uv with pip's configuration, pip where uv cannot be had) is tested in the project, tests/test_install.py; a real
install of the whole pinned set runs in test_new_user.py.
"""

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import clean_env
from test_bake import DEFAULTS, SUPPORTED_COMBINATIONS, bake_ok, combination_id, requirement_names

# Packages that only a project with the option on installs (optuna: the search option; docker: no package).
OPTIONAL_PACKAGES = {
    "routine_ignite": {"pytorch-ignite"},
    "routine_fastai": {"fastai"},
    "use_tensorboard": {"tensorboard"},
    "use_smtp_notifications": {"aiosmtpd"},
    "use_hyperparameter_search": {"optuna"},
    "use_mlflow": {"mlflow"},
}
REQUIREMENTS = {"env": "requirements.txt", "env-dev": "requirements-dev.txt"}


def make(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", *args], cwd=project, env=env or clean_env(), capture_output=True, text=True, timeout=60, check=False
    )


def without_conda() -> dict[str, str]:
    """The environment with no folder on the PATH that holds conda or mamba."""
    env = clean_env()
    folders = env["PATH"].split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in folders if not any((Path(p) / n).exists() for n in ("conda", "mamba")))
    return env


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_conda_brings_python_and_pip_only(cookies, answers):
    """One source of truth: conda brings the project's Python and pip; the packages come from the pip files."""
    project = bake_ok(cookies, answers)
    python = answers.get("python_version", "3.11")
    env = yaml.safe_load((project / "environment.yml").read_text(encoding="utf-8"))
    assert env["channels"] == ["conda-forge"]
    assert env["dependencies"] == [f"python={python}", "pip"]  # no version of their own that could drift
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["requires-python"] == f">={python}"
    assert f"python{python} " in (project / "Makefile").read_text(encoding="utf-8")  # the venv's interpreter


def test_venv_commands(cookies):
    """What `make env` and `make env-dev` run: a venv with the project's Python, then tools/install.py."""
    project = bake_ok(cookies, {})
    for target, requirements in REQUIREMENTS.items():
        dry_run = make(project, "-n", target).stdout.splitlines()
        assert dry_run[0].endswith(" -m venv .venv")  # python3.11, or python3 where there is none
        assert dry_run[1] == (
            f".venv/bin/python tools/install.py .venv --installer auto -c constraints.txt -r {requirements}"
        )
        assert "Activate it with: source .venv/bin/activate" in dry_run[-1]
    assert "--installer pip " in make(project, "-n", "INSTALLER=pip", "env").stdout
    proc = make(project, "INSTALLER=conda", "env")  # refused before anything is made
    assert proc.returncode != 0
    assert "INSTALLER must be auto, uv or pip, got 'conda'" in proc.stderr
    assert not (project / ".venv").exists()


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_optional_packages_only_with_their_option(cookies, answers):
    project = bake_ok(cookies, answers)
    options = {**DEFAULTS, **answers}
    runtime = requirement_names(project / "requirements.txt")
    dev = requirement_names(project / "requirements-dev.txt")
    for option, packages in OPTIONAL_PACKAGES.items():
        expected = packages if options[option] else set()
        assert packages & dev == expected, f"{option}={options[option]}, but the requirements hold {packages & dev}"
    assert "aiosmtpd" not in runtime, "the test SMTP server is a development tool, not a runtime requirement"


def test_conda_without_conda_says_so_in_one_line(cookies):
    project = bake_ok(cookies, {})
    proc = make(project, "ENV_MANAGER=conda", "env-dev", env=without_conda())
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: ENV_MANAGER=conda but neither conda nor mamba is on the PATH: install Miniforge, or leave ENV_MANAGER "
        "unset for pip"
    ]
    assert not (project / ".venv").exists()

    proc = make(project, "ENV_MANAGER=poetry", "env")
    assert proc.returncode != 0
    assert "ENV_MANAGER must be pip or conda, got 'poetry'" in proc.stderr


def test_conda_commands(cookies):
    """What `make ENV_MANAGER=conda env-dev` runs, shown by make -n; then the up-to-date and update cases."""
    project = bake_ok(cookies, {})
    for target, requirements in REQUIREMENTS.items():
        dry_run = make(project, "-n", "ENV_MANAGER=conda", target, env=without_conda()).stdout  # mamba would be used
        assert "conda env create -p .venv -f environment.yml\n" in dry_run
        assert f".venv/bin/python tools/install.py .venv --installer auto -c constraints.txt -r {requirements}\n" in (
            dry_run
        )
        assert "Activate it with: conda activate ./.venv" in dry_run

    # A conda environment already there and up to date: make does nothing, and needs no conda to say so.
    (project / ".venv" / "conda-meta").mkdir(parents=True)
    stamps = [project / ".venv" / ".installed-conda-env", project / ".venv" / ".installed-conda-dev"]
    for stamp in stamps:
        stamp.touch()
    proc = make(project, "ENV_MANAGER=conda", "env-dev", env=without_conda())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Ready. Activate it with: conda activate ./.venv"

    # A changed pin installs again into the same environment; a changed environment.yml updates it first.
    for stamp in stamps:
        os.utime(stamp, (0, 0))
    dry_run = make(project, "-n", "ENV_MANAGER=conda", "env-dev", env=without_conda()).stdout
    assert "conda env" not in dry_run
    assert "tools/install.py .venv --installer auto -c constraints.txt -r requirements-dev.txt" in dry_run
    os.utime(project / ".venv" / "conda-meta", (0, 0))
    dry_run = make(project, "-n", "ENV_MANAGER=conda", "env-dev", env=without_conda()).stdout
    assert "conda env update --prune -p .venv -f environment.yml" in dry_run

    # A pip venv in the way is refused, not overwritten (CONDA=true: a conda that is there, so the next check runs).
    (project / ".venv" / "conda-meta").rmdir()
    proc = make(project, "ENV_MANAGER=conda", "CONDA=true", "env-dev")
    assert proc.returncode != 0
    assert "error: .venv is a pip venv, not a conda environment: remove it (rm -rf .venv)" in proc.stderr
