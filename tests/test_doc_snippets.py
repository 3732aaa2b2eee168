"""Every code block of the documentation (docs/*.md) is run or checked, so the pages cannot go stale.

The convention (written up in docs/developing.md):

- ```python blocks run as they are, one process each, in page order, from the root of a project baked with every
  available option (one fresh bake per page). A block right after a line ``<!-- file: PATH -->`` is first saved
  as PATH in that project (a module the next blocks import). A block that cannot run here (it needs a GPU, say)
  follows a line ``<!-- not-run: reason -->`` and is only compiled.
- ```bash blocks: each command is checked, not run. ``make T`` -> T is a target of the baked project's Makefile or
  of the template's, and the options in its ``ARGS`` exist in the script that target runs; ``python X.py --opt`` and
  ``python -m mod --opt`` -> X.py (mod) exists in the baked project and its ``--help`` names the options; the
  commands of ALLOWED pass as they are; anything else fails, so that the list stays deliberate.
- ```yaml, ```json and ```toml blocks must parse; ```text blocks (and blocks without a language) are output.
"""

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE_DIR, clean_env, run

DOCS = sorted((TEMPLATE_DIR / "docs").glob("*.md"))
ALLOWED = {"cookiecutter", "cruft", "pip", "git", "docker", "torchrun", "sbatch", "srun", "conda", "source", "cd"}
ALLOWED |= {"tensorboard", "mlflow", "podman"}
# Shell builtins that set the environment of the commands after them (a password read without echo, not typed).
ALLOWED |= {"export", "read"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
SHELL = {"bash", "sh", "shell"}
# Shown, not checked: output, and formats that other tests check (the Dockerfile is tested statically).
NOT_CHECKED = {"", "text", "console", "dockerfile", "diff", "csv"}
PARSED = {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads}

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<kind>not-run|file):\s*(?P<value>.*?)\s*-->\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    not_run: str | None = None  # why it is only compiled
    file: str | None = None  # where it is saved in the project before it runs

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line} ({self.lang or 'no language'})"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the directive comment just above each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent, start = len(fence["indent"]), index
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        code = "\n".join(line[indent:] for line in lines[start + 1 : end]) + "\n"
        directive = DIRECTIVE.match(lines[start - 1]) if start else None
        kind = directive["kind"] if directive else None
        found.append(
            Block(
                page.name,
                start + 1,
                fence["lang"],
                code,
                not_run=directive["value"] if kind == "not-run" else None,
                file=directive["value"] if kind == "file" else None,
            )
        )
        index = end + 1
    return found


def all_options() -> list[str]:
    """cookiecutter key=value arguments turning on every yes/no question."""
    questions = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    return [f"{key}=true" for key, value in questions.items() if isinstance(value, bool) and not key.startswith("_")]


def bake(output: Path) -> Path:
    cmd = [sys.executable, "-m", "cookiecutter", "--no-input", "--default-config", "-o", str(output)]
    run([*cmd, str(TEMPLATE_DIR), *all_options()], cwd=output, timeout=120)
    return output / "segmentation_project"


def python_in(project: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run this Python in the baked project's folder, without the caller's LOG_DIR, venv or paths leaking in."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def pages_with(languages: set[str]) -> list[str]:
    return [page.name for page in DOCS if any(block.lang in languages for block in blocks(page))]


def test_every_block_has_a_known_language():
    known = {"python"} | SHELL | NOT_CHECKED | set(PARSED)
    unknown = [str(block) for page in DOCS for block in blocks(page) if block.lang not in known]
    assert not unknown, f"code blocks in a language this test does not know (use one of {sorted(known)}): {unknown}"
    misplaced = [str(b) for page in DOCS for b in blocks(page) if (b.not_run or b.file) and b.lang != "python"]
    assert not misplaced, f"<!-- not-run --> and <!-- file --> are for python blocks only: {misplaced}"


def test_data_blocks_parse():
    for block in (block for page in DOCS for block in blocks(page)):
        if block.lang in PARSED:
            try:
                PARSED[block.lang](block.code)
            except Exception as err:  # noqa: BLE001 - any parse error is the failure this test reports
                pytest.fail(f"{block} does not parse: {err}")


@pytest.mark.parametrize("page", pages_with({"python"}))
def test_python_blocks_run(page, tmp_path):
    """The page's python blocks, in order, in a fresh project with every option: each runs (or compiles)."""
    project = bake(tmp_path)  # logs and weights of the blocks land in it (python_in drops the caller's LOG_DIR)
    for block in blocks(TEMPLATE_DIR / "docs" / page):
        if block.lang != "python":
            continue
        try:
            compile(block.code, str(block), "exec")
        except SyntaxError as err:
            pytest.fail(f"{block} is not valid Python: {err}")
        if block.not_run is not None:
            assert block.not_run, f"{block}: say why it is not run: <!-- not-run: reason -->"
            continue
        if block.file:
            target = project / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        proc = python_in(project, "-c", block.code, timeout=600)
        assert proc.returncode == 0, f"{block} failed:\n{block.code}\n--- stderr ---\n{proc.stderr[-4000:]}"

    # The files a page tells users to add pass the project's own lint, as `make lint` runs it.
    files = [block.file for block in blocks(TEMPLATE_DIR / "docs" / page) if block.file]
    for tool in (["ruff", "check"], ["ruff", "format", "--check"], ["pylint"]) if files else []:
        proc = python_in(project, "-m", *tool, *files, timeout=600)
        assert proc.returncode == 0, f"{' '.join(tool)} on the files of docs/{page}:\n{proc.stdout[-4000:]}"


# ---------------------------------------------------------------------------------------------------------------------
# bash blocks: checked against the baked project, not run
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("docs"))


def makefile_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", makefile.read_text(encoding="utf-8"), re.MULTILINE))


def args_commands(makefile: Path) -> dict[str, list[str]]:
    """Target -> the python command its recipe runs with $(ARGS), e.g. 'train' -> ['train.py']."""
    commands, target = {}, None
    for line in makefile.read_text(encoding="utf-8").splitlines():
        head = re.match(r"^([a-z][\w-]*)\s*:(?!=)", line)
        if head:
            target = head[1]
        elif target and line.startswith("\t") and "$(ARGS)" in line:
            found = re.search(r"\$\(PYTHON\) (.*?) ?\$\(ARGS\)", line)
            if found:  # the script a launcher runs (torch.distributed.run ... train.py), else the script or module
                words = found[1].split()
                scripts = [word for word in words if word.endswith(".py")]
                commands[target] = scripts[-1:] or (words[:2] if words[0] == "-m" else words[:1])
    return commands


@cache
def help_text(project: Path, command: tuple[str, ...]) -> str:
    """``--help`` of a script or module of the baked project."""
    proc = python_in(project, *command, "--help", timeout=300)
    assert proc.returncode == 0, f"{' '.join(command)} --help failed in the baked project:\n{proc.stderr[-2000:]}"
    return proc.stdout


def commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: lines joined at backslashes, split at && || ; |, comments dropped."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in {"&&", "||", ";", "|", "&"}:
                found.append(current)
                current = []
            else:
                current.append(token)
        found.append(current)
    return [cmd for cmd in map(without_assignments, found) if cmd]


def without_assignments(cmd: list[str]) -> list[str]:
    """The command without its leading VAR=value words, which only set its environment."""
    while cmd and ASSIGNMENT.match(cmd[0]):
        cmd = cmd[1:]
    return cmd


def option_problems(project: Path, command: list[str], args: list[str]) -> list[str]:
    """Options in ``args`` that ``python *command --help`` does not name."""
    if command[0] == "-m":
        module = command[1]
        if module in {"pip"}:
            return []
        base = module.replace(".", "/")
        exists = (project / f"{base}.py").is_file() or (project / base / "__init__.py").is_file()
        if not exists and subprocess.run([sys.executable, "-c", f"import {module}"], check=False).returncode:
            return [f"no module {module} in the baked project"]
    elif not (project / command[0]).is_file():
        return [f"no file {command[0]} in the baked project"]
    text = help_text(project, tuple(command))
    options = [arg.split("=")[0] for arg in args if re.match(r"^--?[A-Za-z]", arg)]
    return [f"{' '.join(command)} has no option {opt}" for opt in options if not re.search(rf"(?<![\w-]){opt}\b", text)]


def check_command(project: Path, cmd: list[str]) -> list[str]:
    """What is wrong with one command of a bash block (nothing: [])."""
    name = cmd[0]
    if name in ALLOWED:
        return []
    if name == "make":
        project_targets = makefile_targets(project / "Makefile")
        targets = project_targets | makefile_targets(TEMPLATE_DIR / "Makefile")
        wanted = [arg for arg in cmd[1:] if not arg.startswith("-") and "=" not in arg]
        problems = [f"make {target}: no such target" for target in wanted if target not in targets]
        args = next((arg.partition("=")[2] for arg in cmd[1:] if arg.startswith("ARGS=")), "")
        recipes = args_commands(project / "Makefile")
        for target in wanted:
            if target in project_targets and target in recipes and args:
                problems += option_problems(project, recipes[target], shlex.split(args))
        return problems
    if name in PYTHONS:
        if len(cmd) < 2 or cmd[1] == "-c":
            return [f"{' '.join(cmd)}: give a script or -m module, or use a python block"]
        script = cmd[1:3] if cmd[1] == "-m" else cmd[1:2]
        return option_problems(project, script, cmd[1 + len(script) :])
    return [f"{name}: not a command the docs may use (make, python, or one of {sorted(ALLOWED)})"]


@pytest.mark.parametrize("page", pages_with(SHELL))
def test_bash_blocks_name_real_targets_and_options(page, project):
    problems = [
        f"{block}: {' '.join(cmd)}: {problem}"
        for block in blocks(TEMPLATE_DIR / "docs" / page)
        if block.lang in SHELL
        for cmd in commands(block.code)
        for problem in check_command(project, cmd)
    ]
    assert not problems, "\n".join(problems)


def test_the_checker_refuses_what_does_not_exist(project):
    """The checks above can fail: a made-up target, option, script or command is reported."""
    bad = "make trian\npython train.py --epoch 3\npython nothere.py\nmake train ARGS='--bogus 1'\nrm -rf logs\n"
    problems = [problem for cmd in commands(bad) for problem in check_command(project, cmd)]
    assert len(problems) == 5, problems
    good = 'LOG_DIR=/tmp/x make train ARGS="--epochs 1" && python -m utils.tracking.report --plot  # a comment\n'
    assert [problem for cmd in commands(good) for problem in check_command(project, cmd)] == []
