"""Resolve the two constraint files again with uv: every version kept, one package newer, or everything newer.

    make pins                      # resolve again, keeping every pin (a check that the set still resolves)
    make pins ARGS='-P ruff'       # ruff at its newest version, and only what must move with it
    make pins ARGS='--upgrade'     # every package at its newest version (within pip's configured constraints)
    make pins ARGS='--check'       # change nothing; exit 1 and show the difference where a file would change

`{{cookiecutter.project_slug}}/constraints.txt` is resolved from the project's packages with every option on (the
second part of requirements-template.txt) plus uv; then `constraints-template.txt` from all of
requirements-template.txt with the project's pins held, keeping only what the project's file does not pin.
The current pins are uv's preferences (`-o` on the file itself), so a package moves only when asked to.
The traps, each measured on the template's machines:
- Resolved for Python 3.11.5: soupsieve 4.1.2 (through beautifulsoup4, fastai) needs 3.11.5 or later. The result
  also resolves for 3.12; a package needed below 3.12 only (overrides) stays, harmless in a constraints file.
- torch stays `torch==2.13.0`, never `2.13.0+cpu`, so that the CUDA build on PyPI matches it too.
- No nvidia-*, cuda-* or triton pins: they come with the CUDA build of torch and differ by platform.
- pip's configuration is passed on as for installs (tools/install.py), its constraint files included: on a machine
  whose pip caps torch, `--upgrade` stays within the cap.
"""

import argparse
import difflib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PINS = ROOT / "{{cookiecutter.project_slug}}" / "constraints.txt"
TEMPLATE_PINS = ROOT / "constraints-template.txt"
REQUIREMENTS = ROOT / "requirements-template.txt"
PYTHON_VERSION = "3.11.5"
PLATFORM_PINS = re.compile(r"^(nvidia-|cuda-|triton==)")


def _load_installer():
    """The generated project's tools/install.py, whose mapping of pip's configuration to uv's this uses too."""
    spec = importlib.util.spec_from_file_location("install", PROJECT_PINS.parent / "tools" / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def name(pin: str) -> str:
    """The PEP 503 name of ``pin`` ('Jinja2==3.1.6' -> 'jinja2')."""
    return re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower().strip()


def compile_pins(requirements: str, pins: Path, extra: list[str], env: dict[str, str]) -> list[str]:
    """`uv pip compile` of ``requirements`` (text) with the pins of ``pins`` as preferences: the pin lines."""
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "requirements.in", Path(folder) / "pins.txt"
        source.write_text(requirements, encoding="utf-8")
        output.write_text("".join(f"{p}\n" for p in pin_lines(pins)), encoding="utf-8")
        uv = Path(sys.executable).parent / "uv"
        command = [str(uv), "pip", "compile", str(source), "-o", str(output), "--python-version", PYTHON_VERSION]
        subprocess.run([*command, "--no-header", "--no-annotate", "--quiet", *extra], env=env, check=True)
        lines = output.read_text(encoding="utf-8").splitlines()
    return [line.replace("+cpu", "") for line in lines if line and not PLATFORM_PINS.match(line)]


def pin_lines(path: Path) -> list[str]:
    """The pin lines of a constraints file (no comments, no blank lines)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def with_header(path: Path, pins: list[str]) -> str:
    """``pins`` under the comment lines that head ``path`` now."""
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    return "".join(f"{line}\n" for line in [*header, *pins])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 where a file would change")
    args, extra = parser.parse_known_args()  # the rest goes to uv pip compile: -P NAME, --upgrade, ...
    installer = _load_installer()
    # pip's configuration as uv's: variables, and its constraint files (and no-index) as arguments
    configured, env, _ = installer.uv_arguments(installer.pip_settings(Path(sys.executable)), [], dict(os.environ))
    text = REQUIREMENTS.read_text(encoding="utf-8")
    project_part = text[text.index("# The generated project's requirements") :]
    project = compile_pins(project_part + "uv\n", PROJECT_PINS, [*configured, *extra], env)
    with tempfile.TemporaryDirectory() as folder:
        held = Path(folder) / "project.txt"  # the project's new pins, held while the template's tools resolve
        held.write_text("".join(f"{p}\n" for p in project), encoding="utf-8")
        template = compile_pins(text, TEMPLATE_PINS, ["-c", str(held), *configured, *extra], env)
    pinned = {name(pin) for pin in project}
    template = [pin for pin in template if name(pin) not in pinned]
    changed = 0
    for path, pins in ((PROJECT_PINS, project), (TEMPLATE_PINS, template)):
        new, old = with_header(path, pins), path.read_text(encoding="utf-8")
        diff = list(
            difflib.unified_diff(
                old.splitlines(), new.splitlines(), str(path.relative_to(ROOT)), "new", n=0, lineterm=""
            )
        )
        print("\n".join(diff) if diff else f"{path.relative_to(ROOT)}: unchanged")
        changed += bool(diff)
        if diff and not args.check:
            path.write_text(new, encoding="utf-8")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
