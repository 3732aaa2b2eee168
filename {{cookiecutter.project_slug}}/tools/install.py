"""Install requirements files into an environment with uv, as pip would have: same files, same pins, same indexes.

`make env` and `make env-dev` run it; by hand, from this folder:

    python tools/install.py .venv -r requirements-dev.txt -c constraints.txt

It makes ENV a venv with the interpreter that runs it unless ENV already has a Python (a venv, or the conda
environment `make ENV_MANAGER=conda env` created), then installs with uv: ENV's own, the one beside this interpreter
or on the PATH, else the `uv` wheel that the constraints pin, installed into ENV with pip. Where uv cannot be had, pip
installs instead, after one line saying so; ``--installer pip`` (`make env INSTALLER=pip`) asks for pip outright.

uv reads neither pip's configuration files nor its PIP_* variables, so what `pip config list` shows is handed to uv
as its own variables (table below). uv also takes a package only from the first index that has it, unlike pip:
UV_INDEX_STRATEGY=unsafe-best-match gives pip's rule, the best version on any index. That is how the CPU build of
torch in a find-links folder (2.13.0+cpu) wins over the CUDA build on PyPI (2.13.0), as it does for pip.
A UV_* variable (or SSL_CERT_FILE) already set is left as it is: the user's own setting wins.
Exit status: uv's or pip's; 2 when an argument is wrong or no installer could run.
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

# pip's option -> uv's variable, and how uv separates several values (None: one value only).
PIP_TO_UV = {
    "index-url": ("UV_DEFAULT_INDEX", None),
    "extra-index-url": ("UV_INDEX", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "cert": ("SSL_CERT_FILE", None),
    "timeout": ("UV_HTTP_TIMEOUT", None),
    "default-timeout": ("UV_HTTP_TIMEOUT", None),  # the name pip's configuration files use for --timeout
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "no-index": ("UV_NO_INDEX", None),
    "no-cache-dir": ("UV_NO_CACHE", None),
}
FLAGS = ("no-index", "no-cache-dir")  # on or off; off sets nothing
# uv's older names for the same settings: a user who set one of them has set the newer one too.
OLDER_NAMES = {"UV_DEFAULT_INDEX": "UV_INDEX_URL", "UV_INDEX": "UV_EXTRA_INDEX_URL"}
# pip's own order: a PIP_* variable beats the [install] section, which beats [global] (pip's docs, "Configuration").
SECTIONS = (":env:", "install", "global")


def pip_settings(python: Path) -> dict[str, list[str]]:
    """pip's effective options for `pip install` under ``python``: option name -> its values (e.g.
    ``{"find-links": ["/opt/wheels"]}``), read from `pip config list` (configuration files and PIP_* variables)."""
    proc = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"note: `pip config list` failed under {python}: uv runs without pip's settings", file=sys.stderr)
    found: dict[tuple[str, str], str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if sep and section in SECTIONS:
            found[section, name] = ast.literal_eval(value)  # pip prints values with repr()
    settings = {}
    for section, name in sorted(found, key=lambda item: SECTIONS.index(item[0]), reverse=True):
        settings[name] = found[section, name].split()  # later (stronger) sections overwrite
    return settings


def uv_environment(settings: dict[str, list[str]], constraints: list[str], environ: dict[str, str]) -> dict[str, str]:
    """The environment for `uv pip install`: ``environ`` plus pip's ``settings`` as uv's variables, where the user
    has not set them. Constraints go through UV_CONSTRAINT too: a -c on uv's command line would silence the variable,
    and with it pip's configured constraint files (or the user's UV_CONSTRAINT)."""
    env = dict(environ)
    for option, values in settings.items():
        if option not in PIP_TO_UV or not values:
            continue
        name, separator = PIP_TO_UV[option]
        if OLDER_NAMES.get(name) in environ:
            continue
        if option in FLAGS:
            if values[-1].lower() in ("1", "true", "yes", "on"):
                env.setdefault(name, "1")
        else:
            env.setdefault(name, separator.join(values) if separator else values[-1])
    extra = environ.get("UV_CONSTRAINT", "").split() or settings.get("constraint", [])
    env["UV_CONSTRAINT"] = " ".join([*constraints, *extra])
    env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
    return env


def find_uv(python: Path, constraints: list[str]) -> tuple[str | None, str]:
    """The uv to run and, where there is none, why: the environment's own (the pinned one, from an earlier install),
    beside this interpreter or on the PATH, else installed into the environment with pip (the version the
    constraints pin)."""
    candidates = [python.parent / "uv", Path(sys.executable).parent / "uv", shutil.which("uv")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate), ""
    pins = [arg for path in constraints for arg in ("-c", path)]
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "uv", *pins], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0 and (python.parent / "uv").is_file():
        return str(python.parent / "uv"), ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or ["pip failed"]
    return None, errors[-1]


def environment_python(env_dir: Path) -> Path:
    """ENV's interpreter, after making ENV a venv (with pip) when it has none."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        venv.create(env_dir, with_pip=True)  # raises CalledProcessError where ensurepip is missing
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


def main(argv: list[str] | None = None) -> int:
    """Install; returns the exit status (the installer's, or 2 for a missing file or no installer at all)."""
    args = parse_args(argv)
    for path in [*args.requirement, *args.constraint]:
        if not Path(path).is_file():
            print(f"error: {path} not found: run this from the folder that holds it", file=sys.stderr)
            return 2
    try:
        python = environment_python(args.env_dir)
    except subprocess.CalledProcessError:
        print(
            f"error: {sys.executable} could not make the venv {args.env_dir} (no ensurepip): install your system's "
            "venv package (Debian, Ubuntu: python3-venv), or pass another Python (make env BASE_PYTHON=...)",
            file=sys.stderr,
        )
        return 2
    files = [arg for path in args.requirement for arg in ("-r", path)]
    uv = None
    if args.installer != "pip":
        uv, why = find_uv(python, args.constraint)
        if uv is None and args.installer == "uv":
            print(f"error: uv could not be installed ({why}): fix that, or pass --installer pip", file=sys.stderr)
            return 2
        if uv is None:
            print(f"note: uv could not be installed ({why}); installing with pip instead", file=sys.stderr)
    if uv is None:
        pins = [arg for path in args.constraint for arg in ("-c", path)]
        return subprocess.run([str(python), "-m", "pip", "install", *files, *pins], check=False).returncode
    env = uv_environment(pip_settings(python), args.constraint, dict(os.environ))
    code = subprocess.run([uv, "pip", "install", "--python", str(python), *files], env=env, check=False).returncode
    if code != 0:
        print(f"error: uv failed (exit {code}, above); to install with pip: make env INSTALLER=pip", file=sys.stderr)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: uv or pip has said what it left undone
