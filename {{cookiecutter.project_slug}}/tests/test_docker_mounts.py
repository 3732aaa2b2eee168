"""tools/docker_mounts.sh, which make docker-run and docker-predict call before the container starts: the paths a
container reads must exist, the folders it writes are made, and as root they belong to the image's user."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from config.paths import ROOT_PATH as PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "tools" / "docker_mounts.sh"
IMAGE_USER = ("4242", "4343")  # a uid and gid that no file here has
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")


def mounts(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the script in ``cwd`` for the image's user IMAGE_USER."""
    return subprocess.run(
        ["sh", str(SCRIPT), *IMAGE_USER, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_missing_path_to_read_is_one_line_and_nothing_is_made(tmp_path: Path) -> None:
    done = mounts(tmp_path, "-r", "model.onnx", "-w", "masks")
    assert done.returncode == 2
    assert done.stderr == "error: model.onnx: no such file or folder; give one that exists\n"
    assert not list(tmp_path.iterdir())


def test_folders_to_write_are_made_and_a_file_there_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    done = mounts(tmp_path, "-r", "model.onnx", "-w", "logs", "deep/weights")
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "logs").is_dir() and (tmp_path / "deep" / "weights").is_dir()
    done = mounts(tmp_path, "-w", "model.onnx")
    assert done.returncode == 2 and "model.onnx is a file; the container needs a folder there" in done.stderr


@as_root
def test_as_root_a_new_folder_is_the_image_users(tmp_path: Path) -> None:
    assert mounts(tmp_path, "-w", "logs").returncode == 0
    stat = (tmp_path / "logs").stat()
    assert (str(stat.st_uid), str(stat.st_gid)) == IMAGE_USER


@as_root
def test_as_root_a_folder_of_another_user_is_refused_with_the_chown_that_mends_it(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()  # root's, as `python train.py` run by root leaves it
    (tmp_path / "logs" / "experiments.csv").write_text("run_name\nold\n", encoding="utf-8")
    done = mounts(tmp_path, "-w", "logs")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: logs belongs to uid 0 and the image's user (uid {IMAGE_USER[0]}) cannot write it: run chown -R "
        f"{IMAGE_USER[0]}:{IMAGE_USER[1]} logs/, or choose another folder"
    ]
    assert (tmp_path / "logs").stat().st_uid == 0  # nothing changed: the user decides
    shutil.chown(tmp_path / "logs", int(IMAGE_USER[0]), int(IMAGE_USER[1]))
    assert mounts(tmp_path, "-w", "logs").returncode == 0


@as_root
def test_as_root_a_link_is_judged_by_the_folder_it_names(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    shutil.chown(tmp_path / "masks", int(IMAGE_USER[0]), int(IMAGE_USER[1]))
    (tmp_path / "link").symlink_to(tmp_path / "masks")  # the link itself is root's
    assert mounts(tmp_path, "-w", "link").returncode == 0
