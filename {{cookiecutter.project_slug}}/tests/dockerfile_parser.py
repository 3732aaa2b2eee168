"""The Dockerfile and .dockerignore as Docker reads them: a parser for one, a path matcher for the other."""

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from config.paths import ROOT_PATH as PROJECT_ROOT

# The folders a run reads and writes in the container: mounted from the host (data/, logs/, weights/).
VOLUMES = {"data": "/app/data", "logs": "/app/logs", "weights": "/app/weights"}


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


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    """The instructions of one kind, e.g. every ``COPY``."""
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def copy_sources(instruction: Instruction) -> list[str]:
    """The sources of a COPY or ADD (its options and its destination left out)."""
    args = json.loads(instruction.args) if instruction.args.startswith("[") else shlex.split(instruction.args)
    return [arg for arg in args if not arg.startswith("--")][:-1]


def stage(instructions: list[Instruction], name: str) -> list[Instruction]:
    """The instructions of one build stage: from its ``FROM ... AS name`` up to the next ``FROM``."""
    starts = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    for begin, end in zip(starts, starts[1:] + [len(instructions)], strict=True):
        if shlex.split(instructions[begin].args)[-1] == name:
            return instructions[begin:end]
    raise ValueError(f"no stage {name}")
