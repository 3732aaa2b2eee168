"""tools/install.py: uv installs what pip's configuration says, and pip takes over where uv cannot be had.

Real installs into fresh venvs, from package indexes and a find-links folder made in the test (PEP 503 folders of
hand-made wheels), so nothing is downloaded: `probe` 1.0 on the index and 1.0+local in the find-links folder, as the
CUDA torch 2.13.0 on PyPI and the CPU 2.13.0+cpu in a find-links folder; `later` 1.0 on the extra index and 2.0 on
the main one only, a pin that uv's default strategy (the first index that has the package) cannot meet.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.install import NOT_PASSED, PIP_TO_UV, pip_settings, uv_arguments, uv_version

pytestmark = pytest.mark.slow  # each test makes a venv and installs into it: seconds, not milliseconds

INSTALL = Path(__file__).resolve().parent.parent / "tools" / "install.py"


def make_wheel(folder: Path, name: str, version: str) -> None:
    """A pure-Python wheel whose module ``name`` holds ``VERSION = version``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


def make_index(root: Path, packages: dict[str, list[str]]) -> str:
    """A PEP 503 index in ``root`` (name -> versions); its file:// address."""
    for name, versions in packages.items():
        for version in versions:
            make_wheel(root / "files", name, version)
        links = "".join(f'<a href="../../files/{w.name}">{w.name}</a>\n' for w in (root / "files").glob(f"{name}-*"))
        (root / "simple" / name).mkdir(parents=True)
        (root / "simple" / name / "index.html").write_text(f"<html><body>\n{links}</body></html>\n", encoding="utf-8")
    return (root / "simple").as_uri()


@pytest.fixture(name="sources")
def sources_fixture(tmp_path: Path) -> dict[str, str]:
    """The test's indexes and find-links folder."""
    make_wheel(tmp_path / "find_links", "probe", "1.0+local")
    return {
        "index": make_index(tmp_path / "index", {"probe": ["1.0"], "later": ["1.0", "2.0"]}),
        "extra": make_index(tmp_path / "extra", {"later": ["1.0"]}),
        "find_links": str(tmp_path / "find_links"),
    }


def isolated_env(tmp_path: Path, pip_conf: str, path: str | None = None) -> dict[str, str]:
    """No PIP_* or UV_* setting of this machine's; pip reads ``pip_conf`` last (it overrides the machine's files)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    (tmp_path / "pip.conf").write_text(pip_conf, encoding="utf-8")
    env.update(PIP_CONFIG_FILE=str(tmp_path / "pip.conf"), UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp_path / "uv_cache"))
    if path is not None:
        env["PATH"] = path
    return env


def install(python: str, venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """tools/install.py run by ``python``: ``probe==1.0`` and ``later==2.0`` into ``venv``."""
    requirements = venv.parent / "requirements.txt"
    requirements.write_text("probe==1.0\nlater==2.0\n", encoding="utf-8")
    command = [python, str(INSTALL), str(venv), "-r", str(requirements), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def installed(venv: Path, name: str) -> str:
    """The version of ``name`` that ``venv`` imports, as its module says (with a newline)."""
    code = f"import {name}; print({name}.VERSION)"
    return subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout


def test_uv_honours_pip_configuration(tmp_path, sources):
    """A find-links folder and two indexes given in a pip.conf: the local wheel wins over the index's, and a pin that
    only the main index holds is found although the extra index (searched first by uv) has the package too."""
    if not (shutil.which("uv") or (Path(sys.executable).parent / "uv").exists()):
        pytest.skip("no uv beside this Python or on the PATH (make env installs it)")
    conf = f"[global]\nindex-url = {sources['index']}\nextra-index-url = {sources['extra']}\n"
    env = isolated_env(tmp_path, conf + f"[install]\nfind-links = {sources['find_links']}\n")
    venv = tmp_path / "venv"
    proc = install(sys.executable, venv, env)
    assert proc.returncode == 0, proc.stderr
    assert "pip instead" not in proc.stderr and f"environment at: {venv}" in proc.stderr  # uv did it
    assert installed(venv, "probe") == "1.0+local\n"
    assert installed(venv, "later") == "2.0\n"
    assert list(venv.glob("lib/python*/site-packages/__pycache__/probe.*.pyc")), "compiled at install, as pip does"

    # The user's own UV_* setting wins over what the installer would set: uv's default strategy fails on `later`.
    proc = install(sys.executable, tmp_path / "venv2", {**env, "UV_INDEX_STRATEGY": "first-index"})
    assert proc.returncode == 2
    assert "but not at the requested version" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: uv failed (exit 1; its reason is above): fix what it names; where pip reads a setting that uv does "
        "not, INSTALLER=pip in make installs the same files with pip"
    )


def test_pip_takes_over_where_uv_cannot_be_had(tmp_path, sources):
    """No uv on the PATH or beside the interpreter, none on the indexes: one line, then pip installs the same pins."""
    base_python = Path(sys._base_executable)  # pylint: disable=protected-access  # the Python under this venv
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "uv").exists())
    if (base_python.parent / "uv").exists():
        pytest.skip(f"uv lies beside {base_python}: it cannot be made missing here")
    conf = f"[global]\nindex-url = {sources['index']}\nextra-index-url =\nfind-links = {sources['find_links']}\n"
    env = isolated_env(tmp_path, conf, path=path)
    venv = tmp_path / "venv"

    proc = install(str(base_python), venv, env, "--installer", "uv")  # uv or nothing
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: uv could not be installed (ERROR: No matching distribution found for uv): fix that, or install with "
        "pip (INSTALLER=pip in make)"
    ]

    proc = install(str(base_python), venv, env)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: uv could not be installed (ERROR: No matching distribution found for uv); installing with pip instead"
    ]
    assert installed(venv, "probe") == "1.0+local\n"  # pip's rule: the best version anywhere
    assert installed(venv, "later") == "2.0\n"
    assert not (venv / "bin" / "uv").exists()


def test_pip_settings_follow_pips_precedence(tmp_path):
    """A PIP_* variable beats the [install] section, which beats [global]; several values stay several."""
    conf = "[global]\nfind-links = /g\nextra-index-url = file:///a\n    file:///b\n[install]\nfind-links = /i\n"
    env = isolated_env(tmp_path, conf)
    python = Path(sys.executable)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in [n for n in os.environ if n.startswith(("PIP_", "UV_"))]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("PIP_CONFIG_FILE", env["PIP_CONFIG_FILE"])
        settings = pip_settings(python)
        assert settings["find-links"] == ["/i"]
        assert settings["extra-index-url"] == ["file:///a", "file:///b"]
        monkeypatch.setenv("PIP_FIND_LINKS", "/e1 /e2")
        assert pip_settings(python)["find-links"] == ["/e1", "/e2"]


def test_uv_arguments_map_pips_options():
    settings = {
        "index-url": ["https://mirror/simple"],
        "extra-index-url": ["file:///a", "file:///b"],
        "find-links": ["/w1", "/w2"],
        "constraint": ["/etc/cap.txt"],
        "default-timeout": ["180"],
        "pre": ["false"],
        "no-index": ["true"],
        "proxy": ["http://proxy:3128"],
        "only-binary": [":all:"],
    }
    args, env, left_out = uv_arguments(
        settings, ["constraints.txt"], {"UV_HTTP_TIMEOUT": "30", "UV_INDEX_STRATEGY": ""}
    )
    assert env["UV_DEFAULT_INDEX"] == "https://mirror/simple"
    assert env["UV_INDEX"] == "file:///a file:///b"  # uv's separators: spaces here, commas for find-links
    assert env["UV_FIND_LINKS"] == "/w1,/w2"
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://proxy:3128"
    assert env["UV_HTTP_TIMEOUT"] == "30"  # the user's own setting wins
    assert env["UV_INDEX_STRATEGY"] == "unsafe-best-match"  # an empty variable is no setting
    assert env["UV_COMPILE_BYTECODE"] == "1"  # as pip does
    assert "UV_PRERELEASE" not in env  # a flag that is off sets nothing
    # The project's pins and pip's configured ones, on the command line; no-index has no uv variable.
    assert args == ["-c", "constraints.txt", "-c", "/etc/cap.txt", "--no-index"]
    assert left_out == ["only-binary"]  # named in a note, not dropped unsaid
    # The user's UV_CONSTRAINT replaces pip's configured constraints, never the project's.
    args, env, _ = uv_arguments(settings, ["constraints.txt"], {"UV_CONSTRAINT": "/mine.txt /more.txt"})
    assert args[:6] == ["-c", "constraints.txt", "-c", "/mine.txt", "-c", "/more.txt"]
    assert "UV_CONSTRAINT" not in env
    # uv's older name of a setting counts as the user's own setting too.
    _, env, _ = uv_arguments(settings, [], {"UV_EXTRA_INDEX_URL": "https://mine/simple"})
    assert "UV_INDEX" not in env and env["UV_DEFAULT_INDEX"] == "https://mirror/simple"
    assert set(PIP_TO_UV).isdisjoint(NOT_PASSED)


def test_only_a_uv_that_runs_and_says_its_version(tmp_path):
    """A uv is taken at its word (`uv --version`), so an old one on the PATH is not used for the pinned one."""
    old = tmp_path / "old" / "uv"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'uv 0.4.0 (1234 2024-08-20)'\n", encoding="utf-8")
    stray = tmp_path / "stray" / "uv"
    stray.parent.mkdir()
    stray.write_bytes(b"\x7fELF not a program for this machine")
    for path in (old, stray):
        path.chmod(0o755)
    assert uv_version(old) == "0.4.0"
    assert uv_version(stray) is None
    assert uv_version(tmp_path / "missing") is None
