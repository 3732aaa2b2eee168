"""The config as data: classes, functions, ``functools.partial`` and simple objects <-> JSON, and back.

``to_jsonable`` writes config.json, checkpoints and the experiments.csv row; ``from_jsonable`` rebuilds the objects
for predict.py and resume. The forms:

- a class or function: its dotted name, ``"torch.nn.modules.activation.ReLU"``; one defined in a ``--config`` file:
  ``"/path/to/file.py:Name"`` (the file is run again to rebuild it);
- ``functools.partial(f, *args, **kwargs)``: ``{"partial": <f>, "args": [...], "kwargs": {...}}``;
- another object (a transform): ``{"object": <its class>, "kwargs": <its public attributes>}``, rebuilt as
  ``cls(**kwargs)``.

A lambda or a function defined inside another cannot be imported again: ``to_jsonable`` refuses it with a
ConfigError naming the key.
"""

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Modules made from --config files: module name -> the file's absolute path.
_FILE_MODULES: dict[str, str] = {}


class ConfigError(ValueError):
    """The experiment config is wrong; raised before anything is written. The message is one line."""


def load_file_module(path: str | Path) -> Any:
    """Run a Python file as a module whose classes and functions can be named (and rebuilt) by ``path:Name``.

    Raises:
        ConfigError: the file does not exist, or running it raises (the message names the file and line).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    name = "_config_file_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name], _FILE_MODULES[name] = module, str(path)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as err:
        del sys.modules[name]
        line = next((frame.lineno for frame in reversed(_frames(err)) if frame.filename == str(path)), "?")
        raise ConfigError(f"{path} line {line}: {type(err).__name__}: {err}") from None
    return module


def _frames(err: BaseException) -> list[Any]:
    import traceback  # pylint: disable=import-outside-toplevel  # only for an error

    if isinstance(err, SyntaxError):
        return [traceback.FrameSummary(err.filename or "", err.lineno or 0, "")]
    return list(traceback.extract_tb(err.__traceback__))


def dotted_name(obj: Any) -> str:
    """``module.QualName`` of a class or function (``path.py:QualName`` for one defined in a --config file)."""
    module, qualname = obj.__module__, obj.__qualname__
    if module in _FILE_MODULES:
        return f"{_FILE_MODULES[module]}:{qualname}"
    return f"{module}.{qualname}"


def import_object(name: str) -> Any:
    """Import ``package.module.Name`` or ``/path/file.py:Name`` (the inverse of :func:`dotted_name`).

    Raises:
        ImportError: ``cannot import NAME`` when no module holds it.
    """
    if ":" in name:
        path, _, qualname = name.rpartition(":")
        try:
            obj = load_file_module(path)
        except ConfigError as err:
            raise ImportError(f"cannot import {name}: {err}") from None
        parts, split = qualname.split("."), 0
    else:
        parts = name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        else:
            raise ImportError(f"cannot import {name}")
    try:
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
    except AttributeError:
        raise ImportError(f"cannot import {name}") from None
    return obj


def _importable(obj: Any, where: str) -> str:
    name = dotted_name(obj)
    if "<lambda>" in name or "<locals>" in name:
        raise ConfigError(
            f"{where}: {name.rsplit(':', 1)[-1]} cannot be saved and rebuilt (a lambda or a function defined inside "
            "another); define it with def at the top level of a module or of the --config file"
        )
    return name


# One return per form of value: a flat list reads better than the nesting that would please pylint.
def to_jsonable(value: Any, where: str = "config") -> Any:  # pylint: disable=too-many-return-statements
    """A JSON-able copy of a config value (see the module's docstring for the forms); ``where`` names it in errors."""
    if isinstance(value, Mapping):
        return {
            str(key): to_jsonable(item, f"{where}.{key}" if where != "config" else str(key))
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, where) for item in value]
    if isinstance(value, Path) or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)  # JSON has no paths, NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a number that pandas or Optuna gave
        return value.item()
    if isinstance(value, functools.partial):
        args, kwargs = to_jsonable(list(value.args), where), to_jsonable(dict(value.keywords), where)
        return {"partial": _importable(value.func, where), "args": args, "kwargs": kwargs}
    if isinstance(value, type) or inspect.isroutine(value):
        return _importable(value, where)
    attributes = {key: item for key, item in vars(value).items() if not key.startswith("_")}
    return {"object": _importable(type(value), where), "kwargs": to_jsonable(attributes, where)}


def _looks_imported(text: str) -> bool:
    """``package.module.Name``, or ``/path/file.py:Name`` (a --config file's: its name needs no dot)."""
    if ":" in text:
        path, _, qualname = text.rpartition(":")
        return path.endswith(".py") and all(part.isidentifier() for part in qualname.split("."))
    return "." in text and all(part.isidentifier() for part in text.split("."))


def from_jsonable(value: Any) -> Any:  # pylint: disable=too-many-return-statements  # as to_jsonable
    """Rebuild the objects of :func:`to_jsonable`'s output; a string that names no importable object stays a string.

    Raises:
        ImportError: a ``partial`` or ``object`` form whose callable cannot be imported (``cannot import NAME``).
    """
    if isinstance(value, Mapping):
        if set(value) == {"partial", "args", "kwargs"}:
            func = import_object(value["partial"])
            return functools.partial(func, *from_jsonable(value["args"]), **from_jsonable(value["kwargs"]))
        if set(value) == {"object", "kwargs"}:
            return import_object(value["object"])(**from_jsonable(value["kwargs"]))
        return {key: from_jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_jsonable(item) for item in value]
    if isinstance(value, str) and _looks_imported(value):
        try:
            return import_object(value)
        except ImportError:
            return value
    return value
