"""Generated projects stay linked to the template with cruft: create (the same project as cookiecutter's), check,
and update after a template change."""

import shutil
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR, clean_env, run

# cruft reads a template from a git repository; commits need an identity, which CI may not have.
GIT = ["git", "-c", "user.name=Template Tests", "-c", "user.email=tests@example.org"]
NOT_TEMPLATE = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache")


def tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``folder``."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_cruft_create_check_update(tmp_path):
    cruft = str(Path(sys.executable).parent / "cruft")
    env = clean_env()
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, template, ignore=NOT_TEMPLATE)
    run(["git", "init", "-q"], cwd=template, timeout=60, env=env)
    run([*GIT, "add", "-A"], cwd=template, timeout=60, env=env)
    run([*GIT, "commit", "-q", "-m", "template"], cwd=template, timeout=60, env=env)

    run([cruft, "create", "--no-input", str(template)], cwd=tmp_path, timeout=120, env=env)
    project = tmp_path / "segmentation_project"
    assert (project / ".cruft.json").is_file()

    # The same files, byte for byte, as cookiecutter bakes from the same template; cruft adds only .cruft.json.
    baked = tmp_path / "cookiecutter"
    cookiecutter = [sys.executable, "-m", "cookiecutter", "--no-input", "--default-config", "-o", str(baked)]
    run([*cookiecutter, str(template)], cwd=tmp_path, timeout=120, env=env)
    assert tree(project) == {
        **tree(baked / "segmentation_project"),
        ".cruft.json": (project / ".cruft.json").read_bytes(),
    }
    run([cruft, "check"], cwd=project, timeout=120, env=env)

    # The project is a git repository of its own; a template change then reaches it with `cruft update`.
    run(["git", "init", "-q"], cwd=project, timeout=60, env=env)
    run([*GIT, "add", "-A"], cwd=project, timeout=60, env=env)
    run([*GIT, "commit", "-q", "-m", "baked"], cwd=project, timeout=60, env=env)
    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nA line added to the template.\n", encoding="utf-8")
    run([*GIT, "commit", "-q", "-a", "-m", "change"], cwd=template, timeout=60, env=env)

    run([cruft, "update", "-y"], cwd=project, timeout=120, env=env)
    assert "A line added to the template." in (project / "README.md").read_text(encoding="utf-8")
    run([cruft, "check"], cwd=project, timeout=120, env=env)
