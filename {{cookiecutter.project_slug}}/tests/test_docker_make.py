"""The docker make targets, checked without a Docker engine: ``make -n`` prints the docker commands they would run,
on a machine with or without an NVIDIA GPU."""

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parser import VOLUMES

from config.paths import ROOT_PATH as PROJECT_ROOT

# The SMTP settings that name a file on the host: a path there means nothing in the container, so not forwarded.
HOST_PATH_SETTINGS = {"SMTP_CA_FILE", "SMTP_ENV_FILE"}
PASSWORD = "pa55-never-shown"

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


def docker_command(commands: list[list[str]], engine: str = "docker") -> list[str]:
    """The one ``docker ...`` (or ``podman ...``) command among those make would run."""
    (command,) = [words for words in commands if words[:1] == [engine]]
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
    targets = ["docker-build", "docker-run", "docker-predict", "docker-check"]
    for target in targets + (["docker-tensorboard"] if has_tensorboard() else []):
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
    assert option_values(words, "--target") == ["train"]

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
    # The host folders are checked first: Docker would create missing ones as root (a mistyped DATA_DIR too); those
    # the run writes are made, the image user's (tools/docker_mounts.sh, tested in test_docker_mounts.py).
    uid, gid = str(os.getuid() or 1000), str(os.getgid() or 1000)
    assert ["sh", "tools/docker_mounts.sh", uid, gid, "-r", "data", "-w", "logs", "weights"] in commands


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
    uid, gid = str(os.getuid() or 1000), str(os.getgid() or 1000)
    assert ["sh", "tools/docker_mounts.sh", uid, gid, "-r", "logs"] in make_n("docker-tensorboard")[0]
    assert command[:5] == ["python", "-m", "tensorboard.main", "--logdir", "/app/logs"]


@needs_make
def test_docker_build_of_the_inference_image_and_the_arguments_given(make_n):
    words = docker_command(make_n("docker-build", "VARIANT=inference")[0])
    assert option_values(words, "--target") == ["inference"]
    assert option_values(words, "-t") == [f"{image_name()}:inference"]
    assert {arg.split("=")[0] for arg in option_values(words, "--build-arg")} == {"USER_UID", "USER_GID"}

    base, index = "localhost/python-local:3.11", "http://127.0.0.1:8765/simple"
    given = [f"BASE_IMAGE={base}", f"TORCH_INDEX_URL={index}", "DOCKER=podman", "DOCKER_NETWORK=host", "VARIANT=cpu"]
    words = docker_command(make_n("docker-build", *given)[0], engine="podman")
    assert {f"BASE_IMAGE={base}", f"TORCH_INDEX_URL={index}"} <= set(option_values(words, "--build-arg"))
    assert "--network=host" in words
    # BASE_IMAGE is passed to the inference image too: both images on one base
    words = docker_command(make_n("docker-build", *given[:3], "VARIANT=inference")[0], engine="podman")
    assert option_values(words, "--build-arg")[0] == f"BASE_IMAGE={base}" and index not in " ".join(words)


@needs_make
def test_docker_predict_mounts_model_and_folders_at_their_own_paths(make_n, work):
    (work / "scenes").mkdir()
    commands, _ = make_n("docker-predict", "MODEL=best.onnx", "INPUT=scenes", "OUTPUT=masks", "ARGS=--tile 256")
    words = docker_command(commands)
    model, scenes, masks = work / "best.onnx", work / "scenes", work / "masks"
    assert set(option_values(words, "-v")) == {f"{model}:{model}:ro", f"{scenes}:{scenes}:ro", f"{masks}:{masks}"}
    image = f"{image_name()}:inference"
    assert words[words.index(image) :] == [
        image, "-i", str(scenes), "-o", str(masks), "--weights", str(model), "--tile", "256",
    ]  # fmt: skip
    uid, gid = str(os.getuid() or 1000), str(os.getgid() or 1000)
    assert ["sh", "tools/docker_mounts.sh", uid, gid, "-r", "best.onnx", "scenes", "-w", "masks"] in commands


@needs_make
def test_docker_predict_mounts_the_folder_a_link_names(make_n, work):
    """OUTPUT and INPUT are mounted at their real paths: through a link too, predict.py sees where it writes."""
    (work / "scenes").mkdir()
    (work / "out").mkdir()
    (work / "elsewhere").symlink_to(work / "out")
    words = docker_command(make_n("docker-predict", "MODEL=m.onnx", "INPUT=scenes", "OUTPUT=elsewhere")[0])
    assert f"{work / 'out'}:{work / 'out'}" in option_values(words, "-v")


@needs_make
@pytest.mark.parametrize(
    ("target", "args", "message"),
    [
        (
            "docker-predict",
            ["MODEL=best.onnx"],
            "docker-predict needs MODEL=<export.py's .onnx> INPUT=<folder> OUTPUT=",
        ),
        ("docker-predict", ["MODEL=best.pt", "INPUT=scenes", "OUTPUT=masks"], "MODEL=best.pt: the inference image"),
        ("docker-predict", ["MODEL=m.onnx", "INPUT=scenes", "OUTPUT=link"], "OUTPUT=link is INPUT: the masks would"),
        ("docker-predict", ["MODEL=m.onnx", "INPUT=my scenes", "OUTPUT=masks"], "paths with spaces are not supported"),
        ("docker-run", ["VARIANT=inference"], "VARIANT=inference predicts (make docker-predict); docker-run trains"),
    ],
)
def test_docker_targets_refuse_what_cannot_work_in_one_line(work, target, args, message):
    (work / "scenes").mkdir()
    (work / "link").symlink_to(work / "scenes")  # OUTPUT through a link is INPUT itself
    proc = subprocess.run(
        [MAKE, "-f", str(PROJECT_ROOT / "Makefile"), target, *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert sorted(path.name for path in work.iterdir()) == ["link", "scenes"]  # nothing made
