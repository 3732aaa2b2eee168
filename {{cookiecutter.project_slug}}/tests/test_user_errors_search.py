"""Mistakes a user makes with hyperparameter.py, as a table: each is one line (exit status 2), no traceback, and
nothing under LOG_DIR and WEIGHT_DIR written or left ``running``."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from user_errors import check_nothing_lost, check_one_line, snapshot

from config.paths import GlobalConfig

pytestmark = pytest.mark.slow

CASES = {
    "--trials 0": (("--trials", "0"), {}, ("--trials", ">= 1")),
    "--space: no file": (("--space", "{tmp}/nothere.py"), {}, ("--space",)),
    "--space: syntax": (("--space", "{tmp}/s.py"), {"s.py": "S = {\n"}, ("--space", "line 1", "SyntaxError")),
    "--space: import": (("--space", "{tmp}/s.py"), {"s.py": "import no_such_mod\n"}, ("line 1", "no_such_mod")),
    "--config: syntax": (("--config", "{tmp}/c.py"), {"c.py": "X = {\n"}, ("--config", "line 1", "SyntaxError")),
}


@pytest.mark.parametrize(("args", "files", "words"), CASES.values(), ids=CASES.keys())
def test_a_mistake_is_one_line_and_writes_nothing(
    args: tuple[str, ...],
    files: dict[str, str],
    words: tuple[str, ...],
    global_config: GlobalConfig,
    tmp_path: Path,
    run_script: Callable[..., subprocess.CompletedProcess],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    folders = (global_config.LOG_DIR, global_config.WEIGHT_DIR)
    before = snapshot(*folders)
    result = run_script("hyperparameter.py", "--trials", "1", *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    check_one_line(result, 2, words)
    check_nothing_lost(before, snapshot(*folders), global_config.LOG_DIR, False, words)
