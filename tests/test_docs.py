"""The template's documentation builds without warnings (a broken link or a page missing from nav fails)."""

import ast
import html
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
