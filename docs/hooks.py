"""MkDocs hook: fills the routines page from the generated project's code at build time, so it cannot drift.

In a page, ``<!-- routines:side-by-side -->`` becomes a table with one column per routine file
(``{{cookiecutter.project_slug}}/training/*_training.py``, raw PyTorch first) and one row per part of the file (the
module head, the helpers, ``train()``); ``<!-- routines:keys -->`` becomes the table of config keys (SCHEMA of
``config/schema.py`` and the ``CONFIG_KEYS`` of ``extensions/*.py``) with what each routine refuses (its ``REFUSED``
dict); ``<!-- config:keys -->`` becomes the table of config keys with their meaning and default (the value in
``config/train_config.py``), for the config page. The files are parsed, never imported.
"""

import ast
import html
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent / "{{cookiecutter.project_slug}}"
TRAINING_DIR = PROJECT_DIR / "training"
SCHEMA_FILE = PROJECT_DIR / "config" / "schema.py"
TRAIN_CONFIG_FILE = PROJECT_DIR / "config" / "train_config.py"
EXTENSIONS_DIR = PROJECT_DIR / "extensions"
ORDER = ("pytorch", "ignite", "fastai")
ROWS = ("module: docstring, imports, constants", "helpers", "train()")
SIDE_BY_SIDE = "<!-- routines:side-by-side -->"
KEYS = "<!-- routines:keys -->"
CONFIG_KEYS = "<!-- config:keys -->"
PRE = 'style="font-size: 0.62em; line-height: 1.35; overflow-x: auto; white-space: pre; margin: 0"'


def routine_files() -> dict[str, Path]:
    """Routine name -> file, in the order pytorch, ignite, fastai, then any other."""
    found = {path.stem.removesuffix("_training"): path for path in TRAINING_DIR.glob("*_training.py")}
    names = [name for name in ORDER if name in found] + sorted(set(found) - set(ORDER))
    return {name: found[name] for name in names}


def _start(node: ast.stmt, lines: list[str]) -> int:
    """0-based first line of a top-level definition, with its decorators and the comment lines just above."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def split(source: str) -> tuple[str, str, str]:
    """(module head, helper functions and classes, train() to the end) of a routine file."""
    lines = source.splitlines(keepends=True)
    defs = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    train = next((n for n in defs if n.name == "train"), None)
    if not defs or train is None:
        return source, "", ""
    first, train_start = _start(defs[0], lines), _start(train, lines)
    first = min(first, train_start)
    return "".join(lines[:first]), "".join(lines[first:train_start]), "".join(lines[train_start:])


def refused(source: str) -> dict[str, str]:
    """The module's ``REFUSED = {...}`` literal (empty when there is none)."""
    for node in ast.parse(source).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "REFUSED" for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    return {}


def _code(text: str) -> str:
    if not text.strip():
        return "<em>(none)</em>"
    return f'<pre {PRE}><code class="language-python">{html.escape(text.rstrip(), quote=False)}</code></pre>'


def side_by_side() -> str:
    files = routine_files()
    parts = {name: split(path.read_text(encoding="utf-8")) for name, path in files.items()}
    width = f"{100 / max(len(files), 1):.2f}%"
    head = "".join(
        f'<th style="width: {width}">{name}: <code>training/{path.name}</code> '
        f"({len(path.read_text(encoding='utf-8').splitlines())} lines)</th>"
        for name, path in files.items()
    )
    body = ""
    for index, label in enumerate(ROWS):
        body += f'<tr><th colspan="{len(files)}">{label}</th></tr>'
        body += "<tr>" + "".join(f'<td style="vertical-align: top">{_code(p[index])}</td>' for p in parts.values())
        body += "</tr>"
    table = '<table class="routines-side-by-side" style="table-layout: fixed; width: 100%">'
    return f"{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _assigned_dict(tree: ast.Module, name: str) -> ast.Dict | None:
    """The ``name = {...}`` (or ``name: ... = {...}``) dict literal at the top of a module."""
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return node.value
    return None


def train_config_values() -> dict[str, str]:
    """Key -> the source of its value in TRAIN_CONFIG (config/train_config.py, its Jinja lines dropped)."""
    lines = TRAIN_CONFIG_FILE.read_text(encoding="utf-8").splitlines()
    source = "\n".join(line for line in lines if not line.lstrip().startswith("{%"))
    found = _assigned_dict(ast.parse(source), "TRAIN_CONFIG")
    if found is None:
        raise ValueError(f"no TRAIN_CONFIG dict in {TRAIN_CONFIG_FILE}")
    return {ast.literal_eval(key): ast.unparse(value) for key, value in zip(found.keys, found.values, strict=True)}


def _keys(node: ast.Dict, values: dict[str, str], option: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for key, value in zip(node.keys, node.values, strict=True):
        args = value.args if isinstance(value, ast.Call) else []
        doc = ast.literal_eval(args[0]) if args else ""
        name = ast.literal_eval(key)
        default = values.get(name, ast.unparse(args[2]) if len(args) > 2 else "required")
        if "{{" in default:  # a value the bake fills in (ROUTINE)
            default = "the first routine the project has: 'pytorch', 'ignite' or 'fastai'"
        rows.append((name, doc + option, default))
    return rows


def schema() -> list[tuple[str, str, str]]:
    """(key, meaning, default) of every entry of SCHEMA in config/schema.py, in its order, then the keys of the
    extensions (their option named after the meaning); the default is the value in config/train_config.py."""
    values = train_config_values()
    found = _assigned_dict(ast.parse(SCHEMA_FILE.read_text(encoding="utf-8")), "SCHEMA")
    if found is None:
        raise ValueError(f"no SCHEMA dict in {SCHEMA_FILE}")
    rows = _keys(found, values)
    for path in sorted(EXTENSIONS_DIR.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        keys = _assigned_dict(ast.parse(source), "CONFIG_KEYS")
        option = (ast.get_docstring(ast.parse(source)) or "").partition("(")[2].partition(")")[0]
        if keys is not None:
            rows += _keys(keys, values, f" ({option}; extensions/{path.name})" if option else "")
    return rows


def keys_table() -> str:
    files = routine_files()
    refusals = {name: refused(path.read_text(encoding="utf-8")) for name, path in files.items()}
    head = "<th>key</th><th>meaning</th><th>default</th>" + "".join(f"<th>{name}</th>" for name in files)
    body = ""
    for key, doc, default in schema():
        cells = "".join(
            f"<td>{'refused: ' + html.escape(refusals[name][key]) if key in refusals[name] else 'yes'}</td>"
            for name in files
        )
        body += f"<tr><td><code>{key}</code></td><td>{html.escape(doc)}</td>"
        body += f"<td><code>{html.escape(default)}</code></td>{cells}</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def config_table() -> str:
    """Every SCHEMA key with its meaning and default, in SCHEMA's order."""

    def shown(default: str) -> str:
        return "<em>required</em>" if default == "required" else f"<code>{html.escape(default)}</code>"

    rows = "".join(
        f"<tr><td><code>{key}</code></td><td>{html.escape(doc)}</td><td>{shown(default)}</td></tr>"
        for key, doc, default in schema()
    )
    return f"<table><thead><tr><th>key</th><th>meaning</th><th>default</th></tr></thead><tbody>{rows}</tbody></table>"


def on_page_content(html_text: str, page, config, files):  # MkDocs' hook signature
    if SIDE_BY_SIDE in html_text:
        html_text = html_text.replace(SIDE_BY_SIDE, side_by_side())
    if KEYS in html_text:
        html_text = html_text.replace(KEYS, keys_table())
    if CONFIG_KEYS in html_text:
        html_text = html_text.replace(CONFIG_KEYS, config_table())
    return html_text


def on_serve(server, config, builder):  # `mkdocs serve` rebuilds when a routine or a key changes
    for folder in (TRAINING_DIR, SCHEMA_FILE.parent, EXTENSIONS_DIR):
        server.watch(str(folder))
    return server
