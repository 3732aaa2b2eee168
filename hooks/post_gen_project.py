"""Remove the files of the options that were answered false.

The template holds every optional file; this hook deletes the ones a project did not ask for. That keeps the Python
files free of Jinja if-blocks: each optional feature lives in files of its own. (This file is rendered by Jinja
itself, so it must not hold Jinja block syntax outside the answers below, not even in a comment.)
To add an option: put its files in the template and its paths in OPTIONAL_PATHS.
"""

import json
import os
import shutil
from pathlib import Path

# Rendered with tojson (see pre_gen_project.py): true/false arrive as real booleans.
ANSWERS = json.loads(
    r"""
{
    "routine_pytorch": {{ cookiecutter.routine_pytorch | tojson }},
    "routine_ignite": {{ cookiecutter.routine_ignite | tojson }},
    "routine_fastai": {{ cookiecutter.routine_fastai | tojson }},
    "use_tensorboard": {{ cookiecutter.use_tensorboard | tojson }},
    "use_smtp_notifications": {{ cookiecutter.use_smtp_notifications | tojson }},
    "use_docker": {{ cookiecutter.use_docker | tojson }},
    "use_hyperparameter_search": {{ cookiecutter.use_hyperparameter_search | tojson }},
    "use_mlflow": {{ cookiecutter.use_mlflow | tojson }}
}
"""
)

# option -> files and folders (relative to the project root) that exist only for that option.
# A path that is not in the template (yet) is skipped, so options can be listed before their files exist.
OPTIONAL_PATHS = {
    "routine_pytorch": ["training/pytorch_training.py", "tests/test_pytorch_training.py"],
    "routine_ignite": ["training/ignite_training.py", "tests/test_ignite_training.py"],
    "routine_fastai": [
        "training/fastai_training.py",
        "training/fastai_precision.py",
        "tests/test_fastai_training.py",
    ],
    "use_tensorboard": ["extensions/tensorboard.py", "utils/tracking/tensorboard.py", "tests/test_tensorboard.py"],
    "use_smtp_notifications": [
        "extensions/notify.py",
        "utils/notify",
        "tests/smtp_server.py",
        "tests/test_notify_settings.py",
        "tests/test_notify_delivery.py",
        "tests/test_notify_run.py",
    ],
    "use_docker": [
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
    ],
    "use_hyperparameter_search": [
        "hyperparameter.py",
        "training/search.py",
        "training/search_space.py",
        "training/search_outputs.py",
        "tests/test_hyperparameter.py",
        "tests/test_user_errors_search.py",
    ],
    "use_mlflow": [
        "extensions/mlflow_tracking.py",
        "tests/test_mlflow.py",
        "tests/test_mlflow_evaluation.py",
        "tests/test_mlflow_cv.py",
    ],
}

# Caches that tools leave when they are run inside the template folder itself; they are not part of a project.
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
# Not searched for caches: a project baked again over itself (cookiecutter -f) may hold a venv or a git repository.
SKIPPED = {".venv", ".git"}


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main() -> None:
    project = Path.cwd()  # cookiecutter runs this hook inside the new project folder
    for option, paths in OPTIONAL_PATHS.items():
        if not ANSWERS[option]:
            for relative in paths:
                remove(project / relative)
    for folder, subfolders, _ in os.walk(project):
        for name in [name for name in subfolders if name in CACHE_NAMES]:
            shutil.rmtree(Path(folder) / name)
        subfolders[:] = [name for name in subfolders if name not in CACHE_NAMES | SKIPPED]


if __name__ == "__main__":
    main()
