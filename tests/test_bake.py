"""Bake the template with every supported combination of answers, and with bad answers.

In the style of cookiecutter-django's test_cookiecutter_generation.py: the supported combinations and the expected
files are data; one parametrised test checks each combination.
"""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE_DIR, clean_env, normalise_pin, run
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import is_copy_only_path

# Files of every baked project, whatever the answers.
BASE_FILES = {
    ".gitignore",
    ".pylintrc",
    "LICENSE",
    "Makefile",
    "README.md",
    "constraints.txt",
    "data/.gitkeep",
    "environment.yml",
    "pyproject.toml",
    "requirements-dev.txt",
    "requirements-inference.txt",
    "requirements.txt",
    "slurm/train.sbatch",
    "slurm/train_folds.sbatch",
    "config/__init__.py",
    "config/checks.py",
    "config/merge.py",
    "config/device.py",
    "config/overrides.py",
    "config/paths.py",
    "config/schema.py",
    "config/serialize.py",
    "config/train_config.py",
    "extensions/__init__.py",
    "layers/__init__.py",
    "layers/conv.py",
    "models/__init__.py",
    "models/unet.py",
    "configs/__init__.py",
    "configs/multiclass.py",
    "data_report.py",
    "evaluate.py",
    "export.py",
    "predict.py",
    "train.py",
    "training/__init__.py",
    "training/build.py",
    "training/checkpoint.py",
    "training/data.py",
    "training/distributed.py",
    "training/folds.py",
    "training/cv_scores.py",
    "training/records.py",
    "training/run.py",
    "training/sanity_checks.py",
    "training/signals.py",
    "utils/__init__.py",
    "utils/data/__init__.py",
    "utils/data/fingerprint.py",
    "utils/data/folder.py",
    "utils/data/system_files.py",
    "utils/data/images.py",
    "utils/data/kfold.py",
    "utils/data/normalization.py",
    "utils/data/samples.py",
    "utils/data/synthetic.py",
    "utils/data/targets.py",
    "utils/data/transforms.py",
    "utils/evaluation.py",
    "utils/onnx_inference.py",
    "utils/onnx_evaluation.py",
    "utils/outputs.py",
    "utils/files.py",
    "utils/losses.py",
    "utils/metrics.py",
    "utils/metric_sums.py",
    "utils/ensemble.py",
    "utils/prediction.py",
    "utils/onnx_model.py",
    "utils/tiling.py",
    "utils/tracking/__init__.py",
    "utils/tracking/colours.py",
    "utils/tracking/csv_logs.py",
    "utils/tracking/explore.py",
    "utils/tracking/plot.py",
    "utils/tracking/report.py",
    "utils/tracking/report_cv.py",
    "utils/tracking/report_plot.py",
    "utils/tracking/report_table.py",
    "notebooks/explore_runs.ipynb",
    "tests/conftest.py",
    "tests/test_install.py",
    "tools/__init__.py",
    "tools/install.py",
    "tests/test_config.py",
    "tests/test_data_report.py",
    "tests/test_saved_configs.py",
    "tests/test_folder.py",
    "tests/test_images.py",
    "tests/test_synthetic.py",
    "tests/test_transforms.py",
    "tests/test_distributed.py",
    "tests/test_folds.py",
    "tests/test_onnx_inference.py",
    "tests/test_onnx_predict.py",
    "tests/test_onnx_evaluate.py",
    "tests/test_cross_validation.py",
    "tests/test_interrupt.py",
    "tests/test_logging.py",
    "tests/test_loss.py",
    "tests/test_models.py",
    "tests/test_report.py",
    "tests/test_report_notebook.py",
    "tests/test_colours.py",
    "tests/test_explore.py",
    "tests/test_resume.py",
    "tests/test_routines.py",
    "tests/test_user_errors_predict.py",
    "tests/test_user_errors_train.py",
    "tests/user_errors.py",
    "tests/checkpoints.py",
    "tests/test_ensemble.py",
    "tests/test_evaluate.py",
    "tests/test_metrics.py",
    "tests/test_multiclass_routines.py",
    "tests/test_normalization.py",
    "tests/test_predict.py",
    "tests/test_predict_model_kinds.py",
    "tests/test_export.py",
    "tests/test_real_data.py",
    "tests/test_samples.py",
    "tests/test_targets.py",
    "tests/test_trained_model.py",
    "tests/test_config_merge.py",
    "tests/test_degenerate_data.py",
    "tests/test_lossy_masks.py",
    "tests/test_metric_runs.py",
    "tests/test_metric_sums.py",
    "tests/test_report_nan.py",
    "tests/test_report_cv.py",
    "tests/test_scheduler_metric.py",
    "tests/test_system_files.py",
}

# Files that only a project with the option turned on has.
OPTION_FILES = {
    "routine_pytorch": {"training/pytorch_training.py", "tests/test_pytorch_training.py"},
    "routine_ignite": {"training/ignite_training.py", "tests/test_ignite_training.py"},
    "routine_fastai": {"training/fastai_training.py", "training/fastai_precision.py", "tests/test_fastai_training.py"},
    "use_tensorboard": {"extensions/tensorboard.py", "utils/tracking/tensorboard.py", "tests/test_tensorboard.py"},
    "use_smtp_notifications": {
        "extensions/notify.py",
        "utils/notify/__init__.py",
        "utils/notify/settings.py",
        "utils/notify/messages.py",
        "utils/notify/conversation.py",
        "utils/notify/smtp.py",
        "tests/smtp_server.py",
        "tests/test_notify_settings.py",
        "tests/test_notify_delivery.py",
        "tests/test_notify_run.py",
    },
    "use_docker": {
        "Dockerfile",
        ".dockerignore",
        "tools/docker_check.py",
        "tools/docker_engine.py",
        "tools/docker_mounts.sh",
        "tools/local_base_image.sh",
        "tests/dockerfile_parser.py",
        "tests/test_dockerfile.py",
        "tests/test_docker_make.py",
        "tests/test_docker_mounts.py",
        "tests/test_docker_check.py",
        "tests/test_inference_image.py",
    },
    "use_hyperparameter_search": {
        "hyperparameter.py",
        "training/search.py",
        "training/search_space.py",
        "training/search_outputs.py",
        "tests/test_hyperparameter.py",
        "tests/test_user_errors_search.py",
    },
    "use_mlflow": {
        "extensions/mlflow_tracking.py",
        "tests/test_mlflow.py",
        "tests/test_mlflow_evaluation.py",
        "tests/test_mlflow_cv.py",
    },
}

DEFAULTS = {
    "routine_pytorch": True,
    "routine_ignite": True,
    "routine_fastai": True,
    "use_tensorboard": True,
    "use_smtp_notifications": False,
    "use_docker": False,
    "use_hyperparameter_search": False,
    "use_mlflow": False,
}

# Each routine alone and with the others (all three; ignite with fastai); every answer value of the other questions at
# least once, python_version x use_tensorboard in all four pairs, e-mail and the search with each routine. Docker with
# and without fastai, TensorBoard and e-mail, which change its Dockerfile and make targets, on both Pythons. Five
# combinations rather than all seven routine sets: the sets differ only in the files the hook removes, which the
# single-routine bakes exercise, and each bake costs about a minute of lint and tests.
SUPPORTED_COMBINATIONS = [
    {},
    {
        "routine_ignite": False,
        "routine_fastai": False,
        "python_version": "3.12",
        "license": "BSD-3-Clause",
        "use_tensorboard": False,
        "use_smtp_notifications": True,
        "use_docker": True,
        "use_hyperparameter_search": True,
        "use_mlflow": True,
    },
    {
        "routine_pytorch": False,
        "routine_fastai": False,
        "license": "Apache-2.0",
        "use_tensorboard": False,
        "use_docker": True,
    },
    {"routine_pytorch": False, "routine_ignite": False, "python_version": "3.12", "license": "Proprietary"},
    {
        "routine_pytorch": False,
        "python_version": "3.12",
        "use_smtp_notifications": True,
        "use_docker": True,
        "use_hyperparameter_search": True,
    },
]

UNRENDERED = re.compile(r"\{\{ ?cookiecutter\.|\{%|\{#")
# Copied without rendering (cookiecutter.json's _copy_without_render) and not text.
BINARY_SUFFIXES = {".png", ".jpg", ".npy", ".pt"}


def combination_id(answers: dict) -> str:
    return "-".join(f"{key}={value}" for key, value in answers.items()) or "defaults"


def expected_files(answers: dict) -> set[str]:
    options = {**DEFAULTS, **answers}
    files = set(BASE_FILES)
    for option, paths in OPTION_FILES.items():
        if options[option]:
            files |= paths
    return files


def project_files(project: Path) -> set[str]:
    return {path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file()}


def bake_ok(cookies, answers: dict) -> Path:
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    return result.project_path


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_bake(cookies, answers):
    project = bake_ok(cookies, answers)

    assert project.name == "segmentation_project"
    assert project_files(project) == expected_files(answers)

    for path in project.rglob("*"):
        if path.is_file() and path.suffix not in BINARY_SUFFIXES:
            text = path.read_text(encoding="utf-8")
            assert not UNRENDERED.search(text), f"unrendered Jinja in {path.relative_to(project)}"
            if path.suffix == ".py":
                compile(text, str(path), "exec")

    # The baked project's own ruff settings (its pyproject.toml) apply: run from its folder.
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project, timeout=120)
    run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=project, timeout=120)


@pytest.mark.pylint
@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_bake_pylint(cookies, answers):
    """The baked project's own `make lint` (ruff check, ruff format --check, pylint on code and tests) is clean."""
    project = bake_ok(cookies, answers)
    run(["make", "lint", f"PYTHON={sys.executable}"], cwd=project, timeout=900, env=clean_env())


def test_answers_are_rendered(cookies):
    """Quotes, backslashes and non-ASCII in free-text answers reach the files intact and keep them valid."""
    answers = {
        "project_name": 'Zoë\'s "Cells" \\ Seg',
        "project_slug": "cells_seg",
        "description": 'Finds "cells"; 100% \\ no <html>.',
        "author_name": 'Dr. O\'Brien "Bob"',
        "author_email": "bob.obrien@example.org",
        "python_version": "3.12",
        "license": "MIT",
    }
    project = bake_ok(cookies, answers)

    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == "cells_seg"
    assert meta["description"] == answers["description"]
    assert meta["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    assert meta["license"] == "MIT"
    assert meta["requires-python"] == ">=3.12"

    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {answers['project_name']}\n")
    assert answers["author_name"] in (project / "LICENSE").read_text(encoding="utf-8")
    env = yaml.safe_load((project / "environment.yml").read_text(encoding="utf-8"))
    assert "python=3.12" in env["dependencies"]


def test_proprietary_license_metadata(cookies):
    project = bake_ok(cookies, {"license": "Proprietary"})
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == "LicenseRef-Proprietary"  # PEP 639: a license that is not in the SPDX list


def requirement_names(path: Path) -> set[str]:
    """Package names a requirements file asks for, following -r includes."""
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[; ]", line)[0].lower())
    return names


def pinned_names(*paths: Path) -> set[str]:
    return {
        line.split("==")[0].strip().lower()
        for path in paths
        for line in path.read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }


@pytest.mark.parametrize("answers", [{}, {"use_tensorboard": False}], ids=combination_id)
def test_every_requirement_is_pinned(cookies, answers):
    project = bake_ok(cookies, answers)
    wanted = requirement_names(project / "requirements-dev.txt")
    assert ("tensorboard" in wanted) == answers.get("use_tensorboard", True)
    assert wanted <= pinned_names(project / "constraints.txt")
    assert "torch==2.13.0" in (project / "constraints.txt").read_text(encoding="utf-8").splitlines()

    # The installer too is pinned (tools/install.py puts the constraints' uv into the venv).
    assert "uv" in pinned_names(project / "constraints.txt")


def test_template_requirements_are_pinned():
    wanted = requirement_names(TEMPLATE_DIR / "requirements-template.txt")
    project_pins = pinned_names(TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "constraints.txt")
    template_pins = pinned_names(TEMPLATE_DIR / "constraints-template.txt")
    assert wanted <= project_pins | template_pins
    assert not project_pins & template_pins, "a version is pinned in both constraint files: keep one"


def test_template_venv_has_what_every_baked_project_needs(cookies):
    """The baked projects' tests and lint run in the template's venv: it must hold all their requirements."""
    project = bake_ok(cookies, {"use_hyperparameter_search": True})  # every routine and every available option on
    assert requirement_names(project / "requirements-dev.txt") <= requirement_names(
        TEMPLATE_DIR / "requirements-template.txt"
    )


def test_template_venv_is_fully_pinned():
    """Every package in the venv running these tests (`make env`) is pinned, at that version, in one constraint file."""
    pins = {
        normalise_pin(line)
        for path in [
            TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "constraints.txt",
            TEMPLATE_DIR / "constraints-template.txt",
        ]
        for line in path.read_text(encoding="utf-8").splitlines()
    }
    installed = run([sys.executable, "-m", "pip", "freeze"], cwd=TEMPLATE_DIR, timeout=120).stdout.splitlines()
    assert [line for line in installed if normalise_pin(line) not in pins] == []


def test_makefile_targets(cookies):
    project = bake_ok(cookies, {"use_hyperparameter_search": True})
    help_text = run(["make", "help"], cwd=project, timeout=60).stdout
    targets = ["env", "env-dev", "train", "predict", "data-report", "test", "lint", "format", "tensorboard", "search"]
    for target in [*targets, "clean"]:
        assert re.search(rf"^  {target} ", help_text, re.MULTILINE), f"make help does not list {target}"

    dry_run = run(["make", "-n", "env-dev"], cwd=project, timeout=60).stdout
    assert "-m venv .venv" in dry_run
    assert "tools/install.py .venv --installer auto -c constraints.txt -r requirements-dev.txt" in dry_run

    dry_run = run(["make", "-n", "train", "PYTHON=python", "ARGS=--set EPOCHS=1"], cwd=project, timeout=60).stdout
    assert "python train.py --set EPOCHS=1" in dry_run

    dry_run = run(["make", "-n", "data-report", "PYTHON=python", "ARGS=data/my_set"], cwd=project, timeout=60).stdout
    assert "python data_report.py data/my_set" in dry_run

    dry_run = run(
        ["make", "-n", "search", "PYTHON=python", "TRIALS=4", "ARGS=--resume"], cwd=project, timeout=60
    ).stdout
    assert "python hyperparameter.py --trials 4 --resume" in dry_run


def test_make_without_venv_says_what_to_do(cookies):
    """`make train` before `make env-dev` says what to do, not a bare 'No such file or directory'."""
    project = bake_ok(cookies, {})
    proc = subprocess.run(
        ["make", "train"], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "run 'make env-dev' first" in proc.stderr


def test_tool_caches_in_the_template_are_not_baked(cookies, tmp_path):
    """Running pytest or ruff inside the template folder leaves caches there; the post-gen hook drops them."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, template, ignore=shutil.ignore_patterns(".git", ".venv", "build"))
    project_dir = template / "{{cookiecutter.project_slug}}"
    for cache in ["__pycache__/x.pyc", "models/__pycache__/unet.cpython-311.pyc", ".ruff_cache/x", ".pytest_cache/x"]:
        (project_dir / cache).parent.mkdir(parents=True, exist_ok=True)
        (project_dir / cache).write_text("cache", encoding="utf-8")

    result = cookies.bake(template=str(template))
    assert result.exception is None, result.exception
    assert project_files(result.project_path) == expected_files({})


def test_python_files_are_copied_without_rendering():
    """Only config/train_config.py goes through Jinja; every other Python file is copied as it is.

    A new .py file outside the folders listed in cookiecutter.json's _copy_without_render fails here: add it there.
    """
    context = {"cookiecutter": json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))}
    project_dir = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"

    def copied_as_is(relative: Path) -> bool:
        # cookiecutter copies a matching folder whole, so a file is copied as is when it or a parent folder matches
        return any(is_copy_only_path(p.as_posix(), context) for p in [relative, *relative.parents[:-1]])

    rendered = {
        path.relative_to(project_dir).as_posix()
        for path in project_dir.rglob("*.py")
        if "__pycache__" not in path.parts and not copied_as_is(path.relative_to(project_dir))
    }
    assert rendered == {"config/train_config.py"}


# Bad answers: (answers, what the hook's one-line message must say).
BAD_SLUGS = [
    "Segmentation",  # uppercase
    "1segmentation",  # starts with a digit
    "my project",  # space
    "my.project",  # dot
    "my_project_",  # ends with a separator
    'a"; import os; os.chdir(os.pardir); open("pwned", "w") #',  # code after a closing quote
    'a""" + str(open("pwned", "w")) + """',  # code after a closing triple quote
    "a''' + str(open('pwned', 'w')) + '''",
]
BAD_ANSWERS = [
    *[({"project_slug": slug}, f"project_slug {slug!r} is not a valid project name") for slug in BAD_SLUGS],
    ({"author_email": "not-an-email"}, "author_email 'not-an-email' is not an e-mail address"),
    ({"author_email": "me@localhost"}, "author_email 'me@localhost' is not an e-mail address"),
    (
        {"routine_pytorch": False, "routine_ignite": False, "routine_fastai": False},
        "choose at least one training routine",
    ),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[combination_id(a) for a, _ in BAD_ANSWERS])
def test_bad_answers_are_refused(cookies, capfd, tmp_path, answers, message):
    result = cookies.bake(extra_context=answers)

    assert isinstance(result.exception, FailedHookException)
    assert result.exit_code != 0
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert any(message in line for line in errors), f"no ERROR line says {message!r}: {errors}"

    # pytest-cookies bakes into tmp_path/cookies/bakeNN; the refused project leaves nothing there.
    written = [path for path in (tmp_path / "cookies").rglob("*") if not re.fullmatch(r"bake\d+", path.name)]
    assert written == []


def test_hook_refusal_on_the_command_line(tmp_path):
    """What a user sees: one ERROR line from the hook, exit status 1, no project folder."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE_DIR),
            "project_slug=Bad",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "ERROR: project_slug 'Bad' is not a valid project name" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_any_unicode_answer_keeps_every_rendered_format_valid(cookies):
    """Emoji (outside the Basic Multilingual Plane: JSON writes them as surrogate pairs, which TOML refuses), quotes
    and backslashes in the free-text answers: TOML, YAML, Python and Markdown files of the bake stay valid."""
    answers = {
        "project_name": 'Brain 🧠 "Seg" \\ Zoë',
        "project_slug": "brain_seg",
        "description": 'Finds 🧬 "cells" \\ fast',
        "author_name": "Dr. 🧪 O'Brien",
        "use_docker": True,
        "use_smtp_notifications": True,
    }
    project = bake_ok(cookies, answers)
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["description"] == answers["description"]
    assert meta["authors"][0]["name"] == answers["author_name"]
    yaml.safe_load((project / "environment.yml").read_text(encoding="utf-8"))
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    assert (project / "README.md").read_text(encoding="utf-8").startswith(f"# {answers['project_name']}\n")
