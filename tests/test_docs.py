"""The template's documentation builds without warnings (a broken link or a page missing from nav fails)."""

import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, run


def test_docs_build(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=TEMPLATE_DIR, timeout=120)
    for page in ["index.html", "questions/index.html", "generated-project/index.html", "developing/index.html"]:
        assert (tmp_path / "site" / page).is_file(), f"{page} was not built"
