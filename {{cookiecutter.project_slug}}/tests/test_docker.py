"""The Dockerfile, .dockerignore and the docker make targets, checked without a Docker engine.

Nothing is built here: the Dockerfile is parsed and checked against the project, its shell steps run under ``sh``
with stand-ins for pip and useradd, and ``make -n`` prints the docker commands the targets would run.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.config import ROOT_PATH as PROJECT_ROOT

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
VOLUMES = {"data": "/app/data", "logs": "/app/logs", "weights": "/app/weights"}
# The SMTP settings that name a file on the host: a path there means nothing in the container, so not forwarded.
HOST_PATH_SETTINGS = {"SMTP_CA_FILE", "SMTP_ENV_FILE"}
PASSWORD = "pa55-never-shown"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``RUN``, ``COPY``..., its arguments with continued lines joined, its line."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, as Docker reads them.

    Blank lines and ``#`` comments are dropped, also inside an instruction continued over several lines; a line
    ending in a backslash goes on on the next one (joined without the backslash and the line break, as Docker does).
    """
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    if pending:
        raise ValueError(f"line {start}: the instruction goes on past the end of the file")
    return instructions


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern]]:
    """The rules of a .dockerignore: (is it an exception "!...", the path pattern as a regular expression)."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        # Docker's rules (Go's filepath.Match plus **): * and ? stop at "/", ** crosses folders.
        regex = re.sub(
            r"\*\*/?|\*|\?|\[[^]]*]|[^*?[]+",
            lambda m: {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                m[0], m[0] if m[0].startswith("[") else re.escape(m[0])
            ),
            pattern,
        )
        rules.append((exception, re.compile(regex)))
    return rules


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves a path (relative to the context) out: the last rule that matches it or a parent wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for exception, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


def context_files() -> set[str]:
    """The project files Docker sends to the build (relative paths), after .dockerignore."""
    rules = ignore_patterns((PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8"))
    files = set()
    for folder, subfolders, names in os.walk(PROJECT_ROOT):
        relative = os.path.relpath(folder, PROJECT_ROOT)
        prefix = "" if relative == "." else f"{Path(relative).as_posix()}/"
        subfolders[:] = [name for name in subfolders if not is_ignored(prefix + name, rules)]
        files |= {prefix + name for name in names if not is_ignored(prefix + name, rules)}
    return files


@pytest.fixture(name="dockerfile", scope="module")
def fixture_dockerfile() -> list[Instruction]:
    """The project's Dockerfile, parsed."""
    return parse_dockerfile((PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8"))


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    """The instructions of one kind, e.g. every ``COPY``."""
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def copy_sources(instruction: Instruction) -> list[str]:
    """The sources of a COPY or ADD (its options and its destination left out)."""
    args = json.loads(instruction.args) if instruction.args.startswith("[") else shlex.split(instruction.args)
    return [arg for arg in args if not arg.startswith("--")][:-1]


def install_step(dockerfile: list[Instruction]) -> Instruction:
    """The one ``RUN`` that installs the dependencies."""
    (step,) = [run for run in only(dockerfile, "RUN") if "pip install" in run.args]
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
    images = [shlex.split(instruction.args)[0] for instruction in only(dockerfile, "FROM")]
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        # An exact version, e.g. python:3.11.13-slim-bookworm: never "latest", "3" or "3.11", which move.
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.]+)*", tag), f"{image} is not pinned to an exact version"
        assert name == "python" and tag.startswith(f"{python}."), f"{image} is not Python {python}"


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
    copies = only(dockerfile, "COPY")
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
    assert "VARIANT must be cpu or cuda, not 'gpu'" in errors
    assert calls == []


def test_image_trains_as_a_user_who_is_not_root(dockerfile, tmp_path):
    users = only(dockerfile, "USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}

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


# make -n: the docker commands the targets would run, on a machine with or without an NVIDIA GPU.


MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


@pytest.fixture(name="work")
def fixture_work(tmp_path: Path) -> Path:
    """The empty folder make runs in (with the project's Makefile): the mounts are its data/, logs/, weights/."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


@pytest.fixture(name="make_n")
def fixture_make_n(tmp_path: Path, work: Path):
    """``make_n(target, *args, gpu=None|"ok"|"broken", **env)``: the commands ``make -n`` prints, split into words,
    and its whole output.

    PATH holds only ``id`` and, when ``gpu`` is given, a stand-in ``nvidia-smi`` that lists a GPU ("ok") or fails as
    it does without a working driver ("broken"): this machine's own GPU, if any, plays no part. The environment
    holds only what the test gives.
    """

    def make_n(target: str, *args: str, gpu: str | None = None, **env: str) -> tuple[list[list[str]], str]:
        bin_dir = tmp_path / f"bin-{gpu}"
        if not bin_dir.exists():
            bin_dir.mkdir()
            (bin_dir / "id").symlink_to(shutil.which("id"))
            if gpu:
                answer = 'echo "GPU 0: NVIDIA Test GPU (UUID: GPU-0)"' if gpu == "ok" else "exit 9"
                (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{answer}\n", encoding="utf-8")
                (bin_dir / "nvidia-smi").chmod(0o755)
        proc = subprocess.run(
            [MAKE, "-n", "-f", str(PROJECT_ROOT / "Makefile"), target, *args],
            cwd=work,
            env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        commands = [shlex.split(line) for line in proc.stdout.replace("\\\n", " ").splitlines()]
        return commands, proc.stdout + proc.stderr

    return make_n


def docker_command(commands: list[list[str]]) -> list[str]:
    """The one ``docker ...`` command among those make would run."""
    (command,) = [words for words in commands if words[:1] == ["docker"]]
    return command


def option_values(words: list[str], option: str) -> list[str]:
    """The values given to an option, e.g. every ``-v`` mount of a docker command."""
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


def image_name() -> str:
    """The image's default name: the project's."""
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]


def has_tensorboard() -> bool:
    """Whether the project (and so its image) has TensorBoard."""
    return "tensorboard" in (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8")


def smtp_settings() -> set[str]:
    """The SMTP_* variables utils/notify/settings.py reads (from its docstring), or none without e-mail."""
    module = PROJECT_ROOT / "utils" / "notify" / "settings.py"
    return set(re.findall(r"``(SMTP_[A-Z_]+)``", module.read_text(encoding="utf-8"))) if module.exists() else set()


def make_in_project(*args: str) -> subprocess.CompletedProcess:
    """Run make in the project folder itself."""
    return subprocess.run([MAKE, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)


@needs_make
def test_make_help_lists_the_docker_targets():
    help_text = make_in_project("help").stdout
    for target in ["docker-build", "docker-run"] + (["docker-tensorboard"] if has_tensorboard() else []):
        assert re.search(rf"^  {target} ", help_text, re.MULTILINE), f"make help does not list {target}"


@needs_make
@pytest.mark.parametrize(("gpu", "variant"), [(None, "cpu"), ("broken", "cpu"), ("ok", "cuda")])
def test_docker_build(make_n, gpu, variant):
    words = docker_command(make_n("docker-build", gpu=gpu)[0])
    assert words[:2] == ["docker", "build"] and words[-1] == "."
    build_args = dict(arg.split("=", 1) for arg in option_values(words, "--build-arg"))
    uid, gid = str(os.getuid() or 1000), str(os.getgid() or 1000)  # root's ids become 1000: never root
    assert build_args == {"VARIANT": variant, "REQUIREMENTS": "requirements.txt", "USER_UID": uid, "USER_GID": gid}
    assert option_values(words, "-t") == [f"{image_name()}:{variant}"]

    overrides = ["VARIANT=cpu", "IMAGE=me/seg", "REQUIREMENTS=requirements-dev.txt"]
    words = docker_command(make_n("docker-build", *overrides, gpu=gpu)[0])
    assert {"VARIANT=cpu", "REQUIREMENTS=requirements-dev.txt"} <= set(option_values(words, "--build-arg"))
    assert option_values(words, "-t") == ["me/seg:cpu"]


@needs_make
@pytest.mark.parametrize(("gpu", "gpus"), [(None, False), ("broken", False), ("ok", True)])
def test_docker_run(make_n, work, gpu, gpus):
    commands, _ = make_n("docker-run", "ARGS=--set EPOCHS=1 --set 'COMMENT=in docker'", gpu=gpu)
    words = docker_command(commands)
    assert words[:2] == ["docker", "run"]
    assert ("--gpus all" in " ".join(words)) == gpus
    assert set(option_values(words, "-v")) >= {f"{work / name}:{target}" for name, target in VOLUMES.items()}
    image = f"{image_name()}:{'cuda' if gpus else 'cpu'}"
    assert words[words.index(image) :] == [
        image,
        "python",
        "train.py",
        "--set",
        "EPOCHS=1",
        "--set",
        "COMMENT=in docker",
    ]
    # The host folders are made first: Docker would create missing ones as root.
    assert ["mkdir", "-p", "data", "logs", "weights"] in commands


@needs_make
def test_docker_run_mounts_the_folders_the_environment_names(make_n, work):
    commands, _ = make_n("docker-run", LOG_DIR="/srv/logs", WEIGHT_DIR="elsewhere/weights")
    mounts = set(option_values(docker_command(commands), "-v"))
    assert {"/srv/logs:/app/logs", f"{work}/elsewhere/weights:/app/weights", f"{work}/data:/app/data"} <= mounts


@needs_make
def test_docker_run_forwards_smtp_settings_by_name_only(make_n, work):
    (work / ".env").write_text(f"SMTP_PASSWORD={PASSWORD}\n", encoding="utf-8")
    commands, output = make_n("docker-run", SMTP_PASSWORD=PASSWORD, SMTP_USER="me@example.org")
    words = docker_command(commands)
    forwarded = set(option_values(words, "-e"))
    # By name: docker copies the value from its own environment, so it never shows in a command line.
    assert forwarded == smtp_settings() - HOST_PATH_SETTINGS
    if forwarded:
        assert f"{work}/.env:/app/.env:ro" in option_values(words, "-v")  # mounted, never built into the image
    else:
        assert "SMTP" not in output and ".env" not in output
    targets = ["docker-build", "docker-run"] + (["docker-tensorboard"] if has_tensorboard() else [])
    for target in targets:
        assert PASSWORD not in make_n(target, SMTP_PASSWORD=PASSWORD)[1]


@needs_make
def test_docker_tensorboard(make_n, work):
    if not has_tensorboard():
        assert make_in_project("-n", "docker-tensorboard").returncode != 0  # no TensorBoard in the image: no target
        return
    words = docker_command(make_n("docker-tensorboard", "TENSORBOARD_PORT=7007")[0])
    assert option_values(words, "-p") == ["127.0.0.1:7007:6006"]  # reachable from this machine only
    assert option_values(words, "-v") == [f"{work / 'logs'}:/app/logs:ro"]
    command = words[words.index(f"{image_name()}:cpu") + 1 :]
    assert command[:5] == ["python", "-m", "tensorboard.main", "--logdir", "/app/logs"]
