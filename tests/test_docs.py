"""The template's documentation builds without warnings (a broken link or a page missing from nav fails)."""

import ast
import html
import json
import re
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, run
from test_doc_snippets import all_options, blocks


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
        "getting-started/index.html",
        "questions/index.html",
        "generated-project/index.html",
        "config/index.html",
        "routines/index.html",
        "tracking/index.html",
        "distributed/index.html",
        "docker/index.html",
        "search/index.html",
        "extending/index.html",
        "troubleshooting/index.html",
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

    # docs/hooks.py fills the config page from SCHEMA: every key, with its meaning, as the code has it now.
    config_page = (tmp_path / "site" / "config" / "index.html").read_text(encoding="utf-8")
    assert "<!-- config:keys -->" not in config_page
    keys = schema_keys()
    assert "EPOCHS" in keys and "MODEL" in keys
    missing = [
        key for key, doc in keys.items() if f"<td><code>{key}</code></td><td>{html.escape(doc)}" not in config_page
    ]
    assert not missing, f"config keys missing from the built config page: {missing}"


def schema_keys() -> dict[str, str]:
    """The keys of the project's config/schema.py and extensions, key -> meaning, imported from the template's code."""
    project = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    code = "import json, config.schema as s; print(json.dumps({k: v.meaning for k, v in s.all_keys().items()}))"
    return json.loads(run([sys.executable, "-c", code], cwd=project, timeout=120).stdout)


def test_generated_project_page_names_every_file(tmp_path):
    """docs/generated-project.md names every file of a project baked with every available option."""
    options = [option for option in all_options()]
    bake = [sys.executable, "-m", "cookiecutter", "--no-input", "--default-config", "-o", str(tmp_path)]
    run([*bake, str(TEMPLATE_DIR), *options], cwd=tmp_path, timeout=120)
    project = tmp_path / "segmentation_project"
    page = (TEMPLATE_DIR / "docs" / "generated-project.md").read_text(encoding="utf-8")
    files = [path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file()]
    assert "train.py" in files
    missing = sorted(
        f for f in files if Path(f).name != "__init__.py" and not re.search(rf"(?m)^{re.escape(f)}\s", page)
    )
    assert not missing, f"docs/generated-project.md does not list {missing}"


def test_troubleshooting_messages_are_in_the_code():
    """Each message quoted on the troubleshooting page still exists in the code: a fixed part of it is found there."""
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}", TEMPLATE_DIR / "hooks")
        for path in folder.rglob("*")
        if path.is_file() and (path.suffix == ".py" or path.name == "Makefile")
    )
    sources = re.sub(r"[\"']\s*\n\s*f?[\"']", "", sources)  # join strings continued on the next line
    sources = sources.replace("$(VENV)", ".venv").replace("$(PYTHON)", ".venv/bin/python")  # the Makefile's defaults
    page = TEMPLATE_DIR / "docs" / "troubleshooting.md"
    messages = [line for block in blocks(page) if block.lang == "text" for line in block.code.splitlines() if line]
    assert len(messages) >= 20
    for message in messages:
        # Split off what changes from run to run (quoted values, (...), [...], paths, numbers) and at ": ", where
        # messages are put together from parts (a config key, an exception's name, a run name).
        fixed = re.split(r": |'[^']*'|\([^)]*\)|\[[^\]]*\]|\S*[/\d]\S*", re.sub(r"^(error|ERROR): ", "", message))
        parts = sorted({part.strip(" :;,.") for part in fixed if len(part.strip(" :;,.")) >= 9}, key=len)
        assert parts, f"no fixed text to look for in {message!r}"
        assert any(part in sources for part in parts), f"{message!r}: none of {parts} is in the code any more"


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
    # train.py (with the options its extensions add): only its options that this page is about; the tools: every one.
    for module, only in (
        ("train.py", {"--resume", "--notify"}),
        ("utils/tracking/report.py", None),
        ("utils/notify/smtp.py", None),
    ):
        sources = [project / module] + (sorted((project / "extensions").glob("*.py")) if module == "train.py" else [])
        options = set().union(*(option_strings(path.read_text(encoding="utf-8")) for path in sources))
        if only:
            assert only <= options, f"{module} has no options {sorted(only - options)}"
            options = only
        missing = sorted(option for option in options if not re.search(rf"(?<![\w-]){option}(?![\w-])", page))
        assert not missing, f"docs/tracking.md does not mention {module}'s options {missing}"

    smtp_doc = ast.get_docstring(ast.parse((project / "utils/notify/settings.py").read_text(encoding="utf-8")))
    variables = set(re.findall(r"``(SMTP_[A-Z_]+)``", smtp_doc))
    assert "SMTP_HOST" in variables and "SMTP_PASSWORD" in variables
    missing = sorted(name for name in variables if f"`{name}`" not in page)
    assert not missing, f"docs/tracking.md does not describe the settings {missing}"

    tensorboard_doc = ast.get_docstring(
        ast.parse((project / "utils/tracking/tensorboard.py").read_text(encoding="utf-8"))
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


def test_quoted_code_is_the_code():
    """A block marked ``<!-- not-run: quoted from training/X.py ... -->`` holds lines of X.py as they are, in order:
    the routines page quotes the raw routine's train() and its step, which must not drift from the file."""
    project = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    quoted = [
        block
        for page in sorted((TEMPLATE_DIR / "docs").glob("*.md"))
        for block in blocks(page)
        if block.not_run and block.not_run.startswith("quoted from ")
    ]
    assert quoted
    for block in quoted:
        path = project / block.not_run.removeprefix("quoted from ").split()[0].rstrip(";,")
        source = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        lines = [line.strip() for line in block.code.splitlines() if line.strip()]
        starts = [i for i in range(len(source)) if source[i : i + len(lines)] == lines]
        assert starts, f"{block} is not a passage of {path.name} any more"
