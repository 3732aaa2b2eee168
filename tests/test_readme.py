"""The generated project's README describes the project it is in: its commands, its files, its options only."""

import re

import pytest
from test_bake import DEFAULTS, SUPPORTED_COMBINATIONS, bake_ok, combination_id
from test_doc_snippets import makefile_targets

# Words that only the README of a project with the option on may contain (case-insensitive).
OPTION_WORDS = {
    "routine_pytorch": ["pytorch_training", "`pytorch`"],
    "routine_ignite": ["ignite"],
    "routine_fastai": ["fastai"],
    "use_tensorboard": ["tensorboard"],
    "use_smtp_notifications": ["smtp", "--notify", "e-mail"],
    "use_docker": ["docker"],
    "use_hyperparameter_search": ["optuna", "hyperparameter", "make search"],
    "use_mlflow": ["mlflow"],
}
# Named in the README as what runs and users create, not as files of the project.
NOT_BAKED = ("logs/", "weights/", "data/", "predictions", ".venv", ".env", "path/to/")
FILE_NAME = re.compile(r"^\.?[\w.-]+(/[\w.<>-]*)*$")


def layout_paths(readme: str) -> list[str]:
    """The first column of the Layout section's listing: 'train.py, predict.py' gives both."""
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listing = section.split("```", 2)[1]
    return [path.strip() for line in listing.strip().splitlines() for path in re.split(r"\s{2,}", line)[0].split(",")]


def named_paths(readme: str) -> list[str]:
    """Paths in `inline code`: with a slash or a file suffix, or a file name of the project root."""

    def is_path(code: str) -> bool:
        has_suffix = re.search(r"\.(py|txt|yml|toml|md|cfg)$", code)
        return bool(FILE_NAME.match(code) and ("/" in code or has_suffix)) or code in {"LICENSE", "Makefile"}

    found = [code for code in re.findall(r"`([^`\n]+)`", readme) if is_path(code)]
    return [path for path in found if not path.startswith(NOT_BAKED)]


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS, ids=combination_id)
def test_readme_matches_the_project(cookies, answers):
    project = bake_ok(cookies, answers)
    readme = (project / "README.md").read_text(encoding="utf-8")

    targets = set(re.findall(r"\bmake ([a-z][\w-]*)", readme))
    assert {"env-dev", "train", "predict", "test", "lint"} <= targets
    missing = sorted(targets - makefile_targets(project / "Makefile"))
    assert not missing, f"the README names make targets that the Makefile lacks: {missing}"

    layout = layout_paths(readme)
    assert "train.py" in layout and "utils/data/" in layout
    paths = layout + named_paths(readme)
    missing = sorted({path for path in paths if not (project / path).exists()})
    assert not missing, f"the README names files that the project lacks: {missing}"

    options = {**DEFAULTS, **answers}
    for option, words in OPTION_WORDS.items():
        if not options.get(option, False):
            left = [word for word in words if word.lower() in readme.lower()]
            assert not left, f"{option} is off, but the README still mentions {left}"
    for option, words in OPTION_WORDS.items():
        if options.get(option, False) and option.startswith(("routine", "use_tensorboard", "use_smtp")):
            assert any(word.lower() in readme.lower() for word in words), f"{option} is on, but the README omits it"
