"""Install requirements files into an environment with uv, as pip would have: same files, same pins, same indexes.

`make env` and `make env-dev` run it; by hand, from this folder:

    python tools/install.py .venv -r requirements-dev.txt -c constraints.txt

It makes ENV a venv with the interpreter that runs it unless ENV already has a Python (a venv, or the conda
environment `make ENV_MANAGER=conda env` created), then installs with the uv that the constraints pin: ENV's own,
the one beside this interpreter or on the PATH when it is that version, else that `uv` wheel installed into ENV
with pip. Where uv cannot be had, pip installs instead, after one line saying so; ``--installer pip``
(`make env INSTALLER=pip`) asks for pip outright.

uv reads neither pip's configuration files nor its PIP_* variables, so what `pip config list` shows is handed to uv
as its own variables (PIP_TO_UV, PIP_FLAGS below; constraint files and no-index as arguments); pip options that uv
cannot be given are named in one note. uv also takes a package only from the first index that has it, unlike pip:
UV_INDEX_STRATEGY=unsafe-best-match gives pip's rule, the best version on any index. That is how the CPU build of
torch in a find-links folder (2.13.0+cpu) wins over the CUDA build on PyPI (2.13.0), as it does for pip. And like
pip, it compiles what it installs to bytecode (UV_COMPILE_BYTECODE).
A UV_* variable (or SSL_CERT_FILE, HTTPS_PROXY) already set is left as it is: the user's own setting wins.
Exit status: 0; 2 when anything failed, after one line that says what (uv's or pip's own message above it).
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

# pip's option -> uv's variables, and how uv separates several values (None: the last value only).
PIP_TO_UV = {
    "index-url": (("UV_DEFAULT_INDEX",), None),
    "extra-index-url": (("UV_INDEX",), " "),
    "find-links": (("UV_FIND_LINKS",), ","),
    "cert": (("SSL_CERT_FILE",), None),
    "timeout": (("UV_HTTP_TIMEOUT",), None),
    "default-timeout": (("UV_HTTP_TIMEOUT",), None),  # the name pip's configuration files use for --timeout
    "trusted-host": (("UV_INSECURE_HOST",), " "),
    "keyring-provider": (("UV_KEYRING_PROVIDER",), None),
    "proxy": (("HTTPS_PROXY", "HTTP_PROXY"), None),  # pip's proxy serves both schemes
}
# pip's on/off options -> uv's variable and its value when on (off sets nothing).
PIP_FLAGS = {
    "pre": ("UV_PRERELEASE", "allow"),
    "no-cache-dir": ("UV_NO_CACHE", "1"),
    "require-hashes": ("UV_REQUIRE_HASHES", "1"),
    "no-build-isolation": ("UV_NO_BUILD_ISOLATION", "1"),
}
# pip's install options that uv cannot be given here: named in one note, so that none is dropped unsaid.
NOT_PASSED = ("client-cert", "only-binary", "no-binary", "prefer-binary", "user", "target", "prefix", "retries")
# uv's older names for the same settings: a user who set one of them has set the newer one too.
OLDER_NAMES = {"UV_DEFAULT_INDEX": "UV_INDEX_URL", "UV_INDEX": "UV_EXTRA_INDEX_URL"}
# pip's own order: a PIP_* variable beats the [install] section, which beats [global] (pip's docs, "Configuration").
SECTIONS = (":env:", "install", "global")


def repeated(option: str, paths: list[str]) -> list[str]:
    """``option`` before each of ``paths``, as pip and uv take repeated files (``-c a -c b``)."""
    return [arg for path in paths for arg in (option, path)]


class InstallError(Exception):
    """A problem the user can fix; main() prints it as one line and exits with 2."""


def pip_settings(python: Path) -> dict[str, list[str]]:
    """pip's effective options for `pip install` under ``python``: option name -> its values (e.g.
    ``{"find-links": ["/opt/wheels"]}``), read from `pip config list` (configuration files and PIP_* variables).

    Raises:
        subprocess.CalledProcessError: ``python`` has no working pip.
    """
    listing = subprocess.run(
        [str(python), "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    found: dict[tuple[str, str], str] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if sep and section in SECTIONS:
            found[section, name] = ast.literal_eval(value)  # pip prints values with repr()
    settings = {}
    for section, name in sorted(found, key=lambda item: SECTIONS.index(item[0]), reverse=True):
        if values := found[section, name].split():
            settings[name] = values  # later (stronger) sections overwrite
    return settings


def is_on(values: list[str]) -> bool:
    """pip's reading of an on/off option's value."""
    return values[-1].lower() in ("1", "true", "yes", "on")


def uv_arguments(
    settings: dict[str, list[str]], constraints: list[str], environ: dict[str, str]
) -> tuple[list[str], dict[str, str], list[str]]:
    """What `uv pip install` gets beside the requirements: its extra arguments, its environment (``environ`` plus
    pip's ``settings`` as uv's variables, where the user has not set them) and the pip options left out.

    Constraint files go on the command line, which silences UV_CONSTRAINT: the project's, then the user's
    UV_CONSTRAINT, or else pip's configured ones. pip's no-index has no uv variable: it becomes ``--no-index``."""
    env = dict(environ)
    for option, values in settings.items():
        names, separator = PIP_TO_UV.get(option, ((), None))
        for name in names:
            if not env.get(name) and not env.get(OLDER_NAMES.get(name, "")):
                env[name] = separator.join(values) if separator else values[-1]
        if option in PIP_FLAGS and is_on(values) and not env.get(PIP_FLAGS[option][0]):
            env[PIP_FLAGS[option][0]] = PIP_FLAGS[option][1]
    if not env.get("UV_INDEX_STRATEGY"):
        env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    # pip compiles what it installs to bytecode, uv only when asked. Without it every process compiles again each
    # module it imports wherever bytecode is not written back (PYTHONDONTWRITEBYTECODE, a read-only venv, an
    # image): importing torch, pandas, matplotlib, monai, ignite and fastai took 17 s instead of 8 s here.
    if not env.get("UV_COMPILE_BYTECODE"):
        env["UV_COMPILE_BYTECODE"] = "1"
    extra = env.pop("UV_CONSTRAINT", "").split() or settings.get("constraint", [])
    args = repeated("-c", [*constraints, *extra])
    if is_on(settings.get("no-index", ["0"])):
        args.append("--no-index")
    return args, env, [option for option in NOT_PASSED if option in settings]


def pinned_version(package: str, constraints: list[str]) -> str | None:
    """The version that the constraint files pin ``package`` to (``uv==0.13.9`` -> ``"0.13.9"``), else None."""
    for path in constraints:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            name, sep, version = line.split("#")[0].partition("==")
            if sep and name.strip().lower() == package:
                return version.strip()
    return None


def uv_version(uv: str | Path) -> str | None:
    """What ``uv --version`` says (``"0.13.9"``), or None for a file that does not run as uv."""
    try:
        words = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):  # not executable here: another platform's build, a stray file
        return None
    parts = words.stdout.split()
    return parts[1] if len(parts) > 1 and parts[0] == "uv" else None


def find_uv(python: Path, constraints: list[str]) -> tuple[str | None, str]:
    """The uv to run and, where there is none, why. Only a uv at the version the constraints pin (any version where
    they pin none): the environment's own, the one beside this interpreter or on the PATH; else that version is
    installed into the environment with pip (an older one there is replaced)."""
    pin = pinned_version("uv", constraints)
    for candidate in (python.parent / "uv", Path(sys.executable).parent / "uv", shutil.which("uv")):
        version = uv_version(candidate) if candidate and Path(candidate).is_file() else None
        if version and pin in (None, version):
            return str(candidate), ""
    requirement = f"uv=={pin}" if pin else "uv"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", requirement], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0 and uv_version(python.parent / "uv"):
        return str(python.parent / "uv"), ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or ["pip failed"]
    return None, errors[-1]


def environment_python(env_dir: Path) -> Path:
    """ENV's interpreter, after making ENV a venv (with pip) when it is new or an empty folder.

    Raises:
        InstallError: ENV is a file, or a folder with files but no bin/python.
        OSError, subprocess.CalledProcessError: the venv could not be made (no rights, no ensurepip).
    """
    python = env_dir / "bin" / "python"
    if not python.exists():
        if env_dir.is_file() or (env_dir.is_dir() and any(env_dir.iterdir())):
            raise InstallError(f"{env_dir} is neither a venv nor a conda environment: name a new folder")
        venv.create(env_dir, with_pip=True)
    return python


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ENV, -r and -c files (repeatable), --installer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("env_dir", type=Path, metavar="ENV", help="the venv or conda environment to install into")
    parser.add_argument("-r", "--requirement", action="append", required=True, help="a requirements file (repeatable)")
    parser.add_argument("-c", "--constraint", action="append", default=[], help="a constraints file (repeatable)")
    parser.add_argument(
        "--installer", choices=("auto", "uv", "pip"), default="auto",
        help="auto (default): uv, else pip with one line saying so; uv: uv or fail; pip: pip only",
    )  # fmt: skip
    return parser.parse_args(argv)


def install(args: argparse.Namespace) -> None:
    """Make or check the environment, then install into it with uv, or pip.

    Raises:
        InstallError: a file, the venv, pip, uv or pip's install failed (uv's and pip's own messages are above).
    """
    for path in [*args.requirement, *args.constraint]:
        if not Path(path).is_file():
            raise InstallError(f"{path} is not a file: run this from the folder that holds it")
    try:
        python = environment_python(args.env_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InstallError(
            f"{sys.executable} could not make the venv {args.env_dir} ({exc}): where ensurepip is missing, install "
            "the system's venv package (Debian, Ubuntu: python3-venv) or pick another Python (make env BASE_PYTHON=...)"
        ) from exc
    try:
        settings = pip_settings(python)
    except subprocess.CalledProcessError as exc:
        raise InstallError(
            f"{python} has no working pip (a venv made halfway?): remove {args.env_dir}, then install again"
        ) from exc
    files = repeated("-r", args.requirement)
    uv, why = find_uv(python, args.constraint) if args.installer != "pip" else (None, "")
    if uv is None and args.installer == "uv":
        raise InstallError(f"uv could not be installed ({why}): fix that, or install with pip (INSTALLER=pip in make)")
    if uv is None:
        if args.installer == "auto":
            print(f"note: uv could not be installed ({why}); installing with pip instead", file=sys.stderr)
        pins = repeated("-c", args.constraint)
        if subprocess.run([str(python), "-m", "pip", "install", *files, *pins], check=False).returncode:
            raise InstallError("pip could not install the requirements (its reason is above)")
        return
    extra, env, left_out = uv_arguments(settings, args.constraint, dict(os.environ))
    if left_out:
        print(
            f"note: uv is not given pip's {', '.join(left_out)} (INSTALLER=pip in make honours them)", file=sys.stderr
        )
    proc = subprocess.run([uv, "pip", "install", "--python", str(python), *files, *extra], env=env, check=False)
    if proc.returncode:
        raise InstallError(
            f"uv failed (exit {proc.returncode}; its reason is above): fix what it names; where pip reads a setting "
            "that uv does not, INSTALLER=pip in make installs the same files with pip"
        )


def main(argv: list[str] | None = None) -> int:
    """Install; returns the exit status: 0, or 2 after one line that says what failed."""
    try:
        install(parse_args(argv))
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: uv or pip has said what it left undone
