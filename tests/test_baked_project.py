"""Run a baked project's own test suite, as its user would (`make test`), for every supported combination."""

import sys

import pytest
from conftest import clean_env, run
from test_bake import SUPPORTED_COMBINATIONS, combination_id


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_baked_project_tests_pass(cookies, answers):
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception

    # This venv has every package the project needs (requirements-template.txt); its Makefile takes PYTHON=...
    proc = run(["make", "test", f"PYTHON={sys.executable}"], cwd=result.project_path, timeout=1800, env=clean_env())
    assert " passed" in proc.stdout
