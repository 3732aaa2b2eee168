"""Run a baked project's own tests, as its user would: the fast tier (`make test`) for every supported combination,
and every tier (`make test-all`: torchrun, real signals, the search, cross-routine parity) with every option on."""

import sys
import time

import pytest
from conftest import clean_env, run
from test_bake import SUPPORTED_COMBINATIONS, combination_id

ALL_OPTIONS = {"use_smtp_notifications": True, "use_docker": True, "use_hyperparameter_search": True}


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_baked_project_fast_tier_passes(cookies, answers):
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception

    # This venv has every package the project needs (requirements-template.txt); its Makefile takes PYTHON=...
    start = time.monotonic()
    proc = run(["make", "test", f"PYTHON={sys.executable}"], cwd=result.project_path, timeout=900, env=clean_env())
    print(f"make test: {time.monotonic() - start:.1f} s")
    assert " passed" in proc.stdout


def test_all_options_bake_passes_every_tier(cookies):
    result = cookies.bake(extra_context=ALL_OPTIONS)
    assert result.exception is None, result.exception
    start = time.monotonic()
    proc = run(["make", "test-all", f"PYTHON={sys.executable}"], cwd=result.project_path, timeout=1800, env=clean_env())
    print(f"make test-all: {time.monotonic() - start:.1f} s")
    assert " passed" in proc.stdout
