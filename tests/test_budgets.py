"""Line budgets of DESIGN.md: no file of a bake over 300 lines; the reading path of one raw run under 900 lines."""

from conftest import TEMPLATE_DIR
from test_bake import bake_ok

ALL_OPTIONS = {
    "use_smtp_notifications": True,
    "use_docker": True,
    "use_hyperparameter_search": True,
    "use_mlflow": True,
}
MAX_LINES = 300
# One raw run, read in order (DESIGN.md, "The reading path"); docs/generated-project.md states the figure.
READING_PATH = [
    "train.py",
    "config/train_config.py",
    "training/pytorch_training.py",
    "training/run.py",
    "training/build.py",
]
READING_PATH_BUDGET = 900


def line_count(path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_file_of_an_all_options_bake_is_over_300_lines(cookies):
    project = bake_ok(cookies, ALL_OPTIONS)
    sizes = {
        path.relative_to(project).as_posix(): line_count(path)
        for path in project.rglob("*")
        if path.is_file() and path.suffix not in {".png", ".npy", ".pt"}
    }
    assert len(sizes) > 50  # the whole project was counted
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_the_reading_path_of_a_raw_run_is_under_900_lines(cookies):
    project = bake_ok(cookies, {})
    counts = [line_count(project / name) for name in READING_PATH]
    total = sum(counts)
    print(f"reading path: {total} lines")
    assert total < READING_PATH_BUDGET
    # The figure the docs state is the figure of a bake.
    page = (TEMPLATE_DIR / "docs" / "generated-project.md").read_text(encoding="utf-8")
    figures = f"That is {total} lines in a project generated with the defaults (`wc -l` of the five files: "
    figures += ", ".join(map(str, counts[:-1])) + f" and {counts[-1]})"
    assert figures in " ".join(page.split()), f"docs/generated-project.md should say: {figures}"
