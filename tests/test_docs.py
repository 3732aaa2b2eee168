"""The template's documentation builds without warnings (a broken link or a page missing from nav fails)."""

import ast
import html
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, run


def refused_keys(source: str) -> dict[str, str]:
    """A routine module's REFUSED dict, read without importing the module."""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(target, "id", None) == "REFUSED" for target in targets):
            return ast.literal_eval(node.value)
    return {}


def test_docs_build(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=TEMPLATE_DIR, timeout=120)
    for page in [
        "index.html",
        "questions/index.html",
        "generated-project/index.html",
        "routines/index.html",
        "tracking/index.html",
        "search/index.html",
        "developing/index.html",
    ]:
        assert (tmp_path / "site" / page).is_file(), f"{page} was not built"
    assert not (tmp_path / "site" / "hooks.py").exists(), "the docs hook was copied into the site"

    # docs/hooks.py puts each routine file, as it is now, into the routines page, with the keys it refuses.
    routines = (tmp_path / "site" / "routines" / "index.html").read_text(encoding="utf-8")
    assert "<!-- routines:" not in routines, "a marker in docs/routines.md was not replaced"
    files = sorted((TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "training").glob("*_training.py"))
    assert files
    for path in files:
        source = path.read_text(encoding="utf-8")
        missing = [line for line in source.splitlines() if html.escape(line, quote=False) not in routines]
        assert not missing, f"{path.name} is not all on the routines page: {missing[:3]}"
        for why in refused_keys(source).values():
            assert f"refused: {html.escape(why)}" in routines, f"{path.name}: {why!r} is not in the keys table"


def option_strings(source: str) -> set[str]:
    """The ``--options`` that a module's argparse parsers define, read without importing the module."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).startswith("--")
    }


def test_tracking_page_names_every_option_setting_and_tag():
    """docs/tracking.md keeps up with the code it describes: a new option, SMTP_ variable or TensorBoard tag that the
    page does not mention fails here, so the page gets updated with the code."""
    page = (TEMPLATE_DIR / "docs" / "tracking.md").read_text(encoding="utf-8")
    project = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    # train.py: only its options that this page is about; the two tools: every option.
    for module, only in (
        ("train.py", {"--resume", "--notify"}),
        ("utils/logging/report.py", None),
        ("utils/notify/smtp.py", None),
    ):
        options = option_strings((project / module).read_text(encoding="utf-8"))
        if only:
            assert only <= options, f"{module} has no options {sorted(only - options)}"
            options = only
        missing = sorted(option for option in options if not re.search(rf"(?<![\w-]){option}(?![\w-])", page))
        assert not missing, f"docs/tracking.md does not mention {module}'s options {missing}"

    smtp_doc = ast.get_docstring(ast.parse((project / "utils/notify/smtp.py").read_text(encoding="utf-8")))
    variables = set(re.findall(r"``(SMTP_[A-Z_]+)``", smtp_doc))
    assert "SMTP_HOST" in variables and "SMTP_PASSWORD" in variables
    missing = sorted(name for name in variables if f"`{name}`" not in page)
    assert not missing, f"docs/tracking.md does not describe the settings {missing}"

    tensorboard_doc = ast.get_docstring(
        ast.parse((project / "utils/logging/tensorboard.py").read_text(encoding="utf-8"))
    )
    tags = {tag.split("<")[0] for tag in re.findall(r"``([a-z_/<>]+)``", tensorboard_doc)}
    assert {"loss/train", "loss/train_step", "lr", "predictions"} <= tags
    missing = sorted(tag for tag in tags if f"`{tag}" not in page)
    assert not missing, f"docs/tracking.md does not list the TensorBoard tags {missing}"


def test_search_page_names_every_option():
    """docs/search.md describes every option of hyperparameter.py: a new option that the page does not mention fails."""
    page = (TEMPLATE_DIR / "docs" / "search.md").read_text(encoding="utf-8")
    source = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "hyperparameter.py").read_text(encoding="utf-8")
    options = option_strings(source)
    assert {"--trials", "--resume", "--jobs"} <= options
    missing = sorted(option for option in options if not re.search(rf"(?<![\w-]){option}(?![\w-])", page))
    assert not missing, f"docs/search.md does not mention hyperparameter.py's options {missing}"
