"""The Dockerfile and .dockerignore, checked without a Docker engine.

Nothing is built here: the Dockerfile is parsed and checked against the project, and its shell steps run under ``sh``
with stand-ins for pip and useradd.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parser import (
    VOLUMES,
    Instruction,
    context_files,
    copy_sources,
    ignore_patterns,
    is_ignored,
    only,
    parse_dockerfile,
    stage,
)

from config.paths import ROOT_PATH as PROJECT_ROOT

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


@pytest.fixture(name="dockerfile", scope="module")
def fixture_dockerfile() -> list[Instruction]:
    """The project's Dockerfile, parsed."""
    return parse_dockerfile((PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8"))


def install_step(dockerfile: list[Instruction]) -> Instruction:
    """The one ``RUN`` of the training stage that installs the dependencies."""
    (step,) = [run for run in only(stage(dockerfile, "train"), "RUN") if "pip install" in run.args]
    return step


def run_step(step: Instruction, tmp_path: Path, fakes: list[str], **env: str) -> tuple[int, str, list[str]]:
    """Run a RUN step with ``sh`` in tmp_path, the commands ``fakes`` replaced by stand-ins that record their call.

    Returns the exit status, stderr and the calls, e.g. ``["pip install -r requirements.txt -c constraints.txt"]``.
    """
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in fakes:
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n', encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    proc = subprocess.run(
        ["/bin/sh", "-c", step.args],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return proc.returncode, proc.stderr, calls


def test_parser_joins_continued_lines_and_drops_comments():
    text = "# syntax comment\nFROM python:3.11.13-slim\n\nRUN a \\\n    # a comment in the middle\n    && b\nUSER app\n"
    assert parse_dockerfile(text) == [
        Instruction("FROM", "python:3.11.13-slim", 2),
        Instruction("RUN", "a     && b", 4),
        Instruction("USER", "app", 7),
    ]
    with pytest.raises(ValueError, match="line 2: the instruction goes on past the end"):
        parse_dockerfile("FROM x\nRUN a \\\n")


def test_dockerfile_has_only_known_instructions(dockerfile):
    assert dockerfile, "the Dockerfile is empty"
    unknown = [f"line {i.line}: {i.keyword}" for i in dockerfile if i.keyword not in INSTRUCTIONS]
    assert not unknown
    assert dockerfile[0].keyword in {"FROM", "ARG"}


def test_base_image_is_pinned_to_the_project_python(dockerfile):
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    python = requires["requires-python"].removeprefix(">=")
    args = dict(shlex.split(a.args)[0].split("=", 1) for a in only(dockerfile, "ARG") if "=" in a.args)
    name, _, tag = args["BASE_IMAGE"].partition(":")
    # An exact version, e.g. python:3.11.13-slim-bookworm: never "latest", "3" or "3.11", which move.
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.]+)*", tag), f"{args['BASE_IMAGE']} is not an exact version"
    assert name == "python" and tag.startswith(f"{python}."), f"{args['BASE_IMAGE']} is not Python {python}"
    # One base for every image, so that their sizes compare; the training image last (the default target).
    stages = [shlex.split(instruction.args) for instruction in only(dockerfile, "FROM")]
    assert stages == [["${BASE_IMAGE}", "AS", "base"], ["base", "AS", "inference"], ["base", "AS", "train"]]
    assert dockerfile[0] == Instruction("ARG", f"BASE_IMAGE={args['BASE_IMAGE']}", dockerfile[0].line)


def test_every_copied_file_is_in_the_build_context(dockerfile):
    context = context_files()
    copies = only(dockerfile, "COPY") + only(dockerfile, "ADD")
    assert copies
    for instruction in copies:
        for source in copy_sources(instruction):
            if source == ".":
                matches = context
            else:
                matches = {path for path in context if Path(path).match(source) or path.startswith(f"{source}/")}
            assert matches, f"line {instruction.line}: COPY {source}: no such file in the build context"
    # What `python train.py` needs is in the image: every Python file and the dependency files.
    code = {p.relative_to(PROJECT_ROOT).as_posix() for p in PROJECT_ROOT.glob("[!.]*/**/*.py")}
    code |= {p.name for p in PROJECT_ROOT.glob("*.py")} | {"constraints.txt", "requirements.txt"}
    assert not {path for path in code if "__pycache__" not in path} - context


def test_dockerignore_keeps_data_logs_weights_and_secrets_out():
    rules = ignore_patterns((PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8"))
    for path in [
        "data/images/0001.png",
        "logs/experiments.csv",
        "weights/run/best.pt",
        ".venv/bin/python",
        ".env",
        ".git/HEAD",
        "models/__pycache__/unet.cpython-311.pyc",
    ]:
        assert is_ignored(path, rules), f".dockerignore lets {path} into the image"
    assert not is_ignored("train.py", rules)


def test_dependencies_install_from_constraints_before_the_code(dockerfile):
    step = install_step(dockerfile)
    assert re.search(r"pip install -r \S+ -c constraints\.txt", step.args), "the install step ignores constraints.txt"
    copies = only(stage(dockerfile, "train"), "COPY")
    deps = [copy for copy in copies if "constraints.txt" in copy_sources(copy)]
    code = [copy for copy in copies if "." in copy_sources(copy)]
    assert deps and code
    # Docker reuses the installed packages while only the code changes: the code comes after the install.
    assert deps[0].line < step.line < code[0].line


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_install_step_per_variant(dockerfile, tmp_path, variant):
    """The CPU variant takes torch (and torchvision when fastai wants it) from the CPU index, at the pinned versions."""
    for name in ["constraints.txt", *(path.name for path in PROJECT_ROOT.glob("requirements*.txt"))]:
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    args = dict(shlex.split(a.args)[0].split("=", 1) for a in only(dockerfile, "ARG") if "=" in a.args)
    assert args["VARIANT"] == "cpu", "the image is not a CPU one by default"

    status, errors, calls = run_step(install_step(dockerfile), tmp_path, ["pip"], **{**args, "VARIANT": variant})

    assert status == 0, errors
    assert calls[-1] == "pip install -r requirements.txt -c constraints.txt"
    if variant == "cuda":
        assert len(calls) == 1  # torch from PyPI: its Linux wheel is the CUDA build
        return
    pins = {
        line.split("==")[0]: line
        for line in (tmp_path / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line
    }
    wanted = ["torch"] + (
        ["torchvision"] if "fastai" in (tmp_path / "requirements.txt").read_text(encoding="utf-8") else []
    )
    cpu_index = "pip install --no-deps --index-url https://download.pytorch.org/whl/cpu"
    assert calls[:-1] == [" ".join([cpu_index, *(pins[name] for name in wanted)])]


def test_install_step_refuses_an_unknown_variant(dockerfile, tmp_path):
    status, errors, calls = run_step(install_step(dockerfile), tmp_path, ["pip"], VARIANT="gpu")
    assert status != 0
    assert "VARIANT must be cpu or cuda (the inference image is --target inference), not 'gpu'" in errors
    assert calls == []


def test_image_trains_as_a_user_who_is_not_root(dockerfile, tmp_path):
    users = [only(stage(dockerfile, name), "USER") for name in ("inference", "train")]
    assert all(users), "a stage without USER: its image would run as root"
    user = users[-1][-1].args.split(":")[0]
    assert user not in {"root", "0"} and users[0][-1].args == users[1][-1].args

    # The step that creates the user refuses uid 0 (a root user under another name) before it creates anything.
    (step,) = [run for run in only(dockerfile, "RUN") if "useradd" in run.args]
    assert re.search(rf"useradd [^&]*\b{user}\b", step.args), f"the RUN step that calls useradd does not create {user}"
    status, errors, calls = run_step(step, tmp_path, ["groupadd", "useradd", "chown"], USER_UID="0", USER_GID="0")
    assert status != 0 and "must not be 0" in errors
    assert calls == []


def test_runs_read_and_write_the_mounted_folders(dockerfile):
    (volume,) = only(dockerfile, "VOLUME")
    assert set(json.loads(volume.args)) == set(VOLUMES.values())
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(i.args for i in only(dockerfile, "ENV"))))
    assert {env["DATA_DIR"], env["LOG_DIR"], env["WEIGHT_DIR"]} == set(VOLUMES.values())
    (workdir,) = only(dockerfile, "WORKDIR")
    assert all(path.startswith(f"{workdir.args}/") for path in VOLUMES.values())
    assert json.loads(only(dockerfile, "CMD")[-1].args) == ["python", "train.py"]


def test_torch_comes_from_the_index_given(dockerfile, tmp_path):
    """TORCH_INDEX_URL (a mirror, a local index) replaces PyTorch's CPU index."""
    shutil.copy(PROJECT_ROOT / "constraints.txt", tmp_path / "constraints.txt")
    mirror = "http://127.0.0.1:8765/simple"
    status, errors, calls = run_step(install_step(dockerfile), tmp_path, ["pip"], VARIANT="cpu", TORCH_INDEX_URL=mirror)
    assert status == 0, errors
    assert calls[0].startswith(f"pip install --no-deps --index-url {mirror} torch==")
