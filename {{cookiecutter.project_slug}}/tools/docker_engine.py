"""The engine that builds the images, where none may be set up yet: docker when its daemon answers, else podman,
installed and configured as docs/docker.md measured it; a base image and torch's CPU wheel where no registry and no
PyTorch index are in reach. Used by tools/docker_check.py (``make docker-check``)."""

import importlib.util
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# podman and what it runs with (runc: crun refuses a cgroup v1/v2 hybrid host); mmdebstrap: the local base image
ENGINE_PACKAGES = (
    "podman", "runc", "conmon", "catatonit", "netavark", "aardvark-dns", "slirp4netns", "uidmap", "fuse-overlayfs",
    "mmdebstrap",
)  # fmt: skip
# pip to download torch's wheel: the environment's own, else the system's (a venv made by uv has none)
PIP = [sys.executable if importlib.util.find_spec("pip") else "python3", "-m", "pip"]


class CheckError(Exception):
    """This machine cannot run the check (exit 2), with what to do."""


def run(*command: str, env: dict | None = None, quiet: bool = False) -> str:
    """Run a command from the project folder; its output is shown (or returned when quiet); raises on failure."""
    proc = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        text=True,
        check=False,
        capture_output=quiet,
    )
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, command, proc.stdout, proc.stderr)
    return proc.stdout or ""


def engine() -> str:
    """docker where its daemon answers, else podman (installed with apt-get, configured as docs/docker.md says)."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return "docker"
    if not shutil.which("podman"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise CheckError("skipped: no Docker engine answers and podman cannot be installed here (needs root, apt)")
        run("apt-get", "update", "-qq", quiet=True)
        run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *ENGINE_PACKAGES,
            quiet=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    conf = Path("/etc/containers/containers.conf")
    if os.geteuid() == 0 and not conf.exists():
        # Ulimits at the hard limits: podman's defaults above them fail without CAP_SYS_RESOURCE; crun refuses a
        # cgroup v1/v2 hybrid host, runc works.
        limits = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
        hard = {name: resource.getrlimit(limit)[1] for name, limit in limits.items()}
        # runc refused any nproc above 32768 here, though this process's hard limit was 96367 (measured)
        if hard["nproc"] == resource.RLIM_INFINITY or hard["nproc"] > 32768:
            hard["nproc"] = 32768
        ulimits = [f'"{name}={value}:{value}"' for name, value in hard.items() if value != resource.RLIM_INFINITY]
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f'[containers]\ndefault_ulimits = [{", ".join(ulimits)}]\n[engine]\nruntime = "runc"\n',
            encoding="utf-8",
        )
    return "podman"


def base_image(docker: str, python: str, given: str | None) -> str:
    """BASE_IMAGE: the one given, else the official one when it can be pulled, else the local stand-in."""
    if given:
        return given
    local = f"localhost/python-local:{python}"
    if subprocess.run([docker, "image", "exists", local], capture_output=True, check=False).returncode == 0:
        return local
    if not (shutil.which("mmdebstrap") and shutil.which("pyenv")):
        raise CheckError(f"no base image: give BASE_IMAGE, or install mmdebstrap and pyenv's Python {python}")
    run("bash", "tools/local_base_image.sh", python, local)
    return local


def torch_index(folder: Path, python: str, fastai: bool) -> str | None:
    """A PEP 503 index with the CPU wheels of torch (and torchvision with fastai) at their pins, or None.

    pip's own configuration is tried first (a wheelhouse, a mirror), then PyTorch's CPU index.
    """
    pins = dict(re.findall(r"^(torch|torchvision)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE))
    for index in ([], ["--index-url", "https://download.pytorch.org/whl/cpu"]):
        try:
            for name in ["torch"] + ["torchvision"] * fastai:
                target = folder / "simple" / name
                wheel = [f"{name}=={pins[name]}+cpu", "-d", str(target), "--no-deps", "--only-binary=:all:"]
                wheel += ["--python-version", python]  # the image's Python, not necessarily this one
                run(*PIP, "download", *wheel, "-q", "--timeout", "20", "--retries", "1", *index, quiet=True)
            return str(folder)
        except subprocess.CalledProcessError:
            continue
    return None


def image_size(docker: str, image: str) -> float:
    """An image's size in GB (10^9 bytes), as the engine counts it."""
    return int(run(docker, "image", "inspect", "--format", "{{.Size}}", image, quiet=True)) / 1e9
