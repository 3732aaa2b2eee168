"""Checks of config values: each ``check(value)`` returns what is wrong with the value, or None.

config/schema.py gives each key one of these; an extension's key may use them too. ``task_checks(config)`` checks the
keys that only make sense together (TASK, CLASSES and the keys that depend on them).
"""

import inspect
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]  # what is wrong with a value, or None
# torch.compile's modes (torch 2.13); another is refused when the model is compiled, after the run has started.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def of_type(*types: type, name: str, optional: bool = False) -> Check:
    """A check that the value is one of ``types`` (a bool is no int here: True epochs make no sense)."""

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return None
        return f"expected {name}{' or None' if optional else ''}, got {type(value).__name__}"

    return check


def callable_or_none(optional: bool = False) -> Check:
    """A check that the value can be called: a class, function or functools.partial (or None if ``optional``)."""

    def check(value: Any) -> str | None:
        if callable(value) or (value is None and optional):
            return None
        if isinstance(value, str):  # what --set makes of a dotted name that does not import
            return f"cannot import {value!r}: give the dotted name of a class or function, e.g. torch.optim.SGD"
        got = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"  # an object's repr may be lines
        return f"expected a class, function or functools.partial{' or None' if optional else ''}, got {got}"

    return check


def number_in(low: float, high: float, name: str, optional: bool = False) -> Check:
    """A check that the value is a number strictly between ``low`` and ``high``, described as ``name``."""

    def check(value: Any) -> str | None:
        problem = of_type(int, float, name="a number", optional=optional)(value)
        if problem or value is None:
            return problem
        return None if low < value < high else f"must be {name}, got {value}"

    return check


def one_of(*choices: Any) -> Check:
    """A check that the value is one of ``choices``."""
    return lambda value: None if value in choices else f"must be one of {list(choices)}, got {value!r}"


def dict_of(keys: dict[str, Check], required: tuple[str, ...] = (), optional: bool = True) -> Check:
    """A check of a small dict: its keys among ``keys`` (each with its own check), ``required`` present."""

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, dict) or set(value) - set(keys) or set(required) - set(value):
            return f"expected a dict with {', '.join(keys)} ({', '.join(required) or 'none'} required), got {value!r}"
        return next((f"{key}: {p}" for key, item in value.items() if (p := keys[key](item))), None)

    return check


def metrics_dict(value: Any) -> str | None:
    """A dict of name -> metric function, names being identifiers (they become column names)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        return f"expected a dict of name -> metric(logits, target), names being identifiers, got {value!r}"
    return next((f"metric {name!r} is not callable" for name, f in value.items() if not callable(f)), None)


def class_names(value: Any) -> str | None:
    """A non-empty list of distinct class names, each an identifier (it becomes part of column names)."""
    if not isinstance(value, list) or not value or not all(isinstance(n, str) and n.isidentifier() for n in value):
        return f"expected a list of names (identifiers: letters, digits, _), got {value!r}"
    return None if len(set(value)) == len(value) else f"names repeat in {value!r}"


def mask_values(value: Any) -> str | None:
    """None, or a dict {mask value (number, 'r,g,b' or (r, g, b)): class index (int >= 0)}."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        return f"expected None or a dict of mask value -> class index, got {value!r}"
    bad = [index for index in value.values() if isinstance(index, bool) or not isinstance(index, int) or index < 0]
    return f"class indices must be ints >= 0, got {bad[0]!r}" if bad else None


def floor_dict(value: Any) -> str | None:
    """A dict of metric name -> the least acceptable value (a number)."""
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, int | float) for k, v in value.items()):
        return None
    return f"expected a dict of metric name -> number, e.g. {{'dice': 0.8}}, got {value!r}"


def positive_int_or_none(value: Any) -> str | None:
    """None or an int > 0."""
    return None if value is None else positive_int(value)


def int_at_least(low: int) -> Check:
    """A check that the value is None or an int >= ``low``."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        return of_type(int, name="an int", optional=True)(value) or (None if value >= low else f"must be >= {low}")

    return check


def compile_kwargs(value: Any) -> str | None:
    """False, True, or a dict of torch.compile keyword arguments."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, dict):
        return f"expected False, True or a dict of torch.compile keyword arguments, got {type(value).__name__}"
    if value.get("mode", "default") not in COMPILE_MODES:
        return f"mode must be one of {list(COMPILE_MODES)}, got {value['mode']!r}"
    if "backend" in value and isinstance(value["backend"], str):
        from torch import _dynamo  # pylint: disable=import-outside-toplevel  # slow to import: only for a named backend

        backends = _dynamo.list_backends(exclude_tags=())  # pylint: disable=protected-access
        if value["backend"] not in backends:
            return f"backend must be one of {backends}, got {value['backend']!r}"
    import torch  # pylint: disable=import-outside-toplevel  # this module imports no torch at its top

    return signature_problem(torch.compile, value, 1)


def kwargs_dict(value: Any) -> str | None:
    """A dict of keyword arguments."""
    ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return None if ok else f"expected a dict of keyword arguments, got {type(value).__name__}"


def positive_int(value: Any) -> str | None:
    """An int > 0."""
    return of_type(int, name="an int")(value) or (None if value > 0 else f"must be > 0, got {value}")


def signature_problem(target: Any, kwargs: dict[str, Any], n_positional: int = 0) -> str | None:
    """Which keyword arguments ``target`` does not take (None if they all fit, or if it has no signature)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind_partial(*([None] * n_positional), **kwargs)
    except TypeError as err:
        accepted = [name for name in signature.parameters if name not in ("self", "args", "kwargs")]
        return f"{err} (accepted: {', '.join(accepted[n_positional:])})"
    return None


def task_checks(config: dict[str, Any]) -> list[str]:
    """The keys that depend on TASK, and the other pairs of keys that only make sense together."""
    task, classes, problems = config["TASK"], config["CLASSES"], []
    if task == "binary" and len(classes) != 1:
        problems.append(f"CLASSES: TASK 'binary' takes one name (the foreground), got {classes!r}")
    if task == "multiclass" and len(classes) < 2:
        problems.append(f"CLASSES: TASK 'multiclass' needs two or more names (the background too), got {classes!r}")
    if config["IGNORE_INDEX"] is not None and task != "multiclass":
        problems.append(f"IGNORE_INDEX is for TASK 'multiclass' (this is {task!r}); set it None")
    elif (
        config["MASK_VALUES"] is None
        and isinstance(config["IGNORE_INDEX"], int)
        and (config["IGNORE_INDEX"] in range(len(classes)))
    ):
        problems.append(f"IGNORE_INDEX {config['IGNORE_INDEX']} is the class {classes[config['IGNORE_INDEX']]!r}")
    weights = config["LOSS_CONFIG"].get("class_weights")
    n_outputs = 1 if task == "binary" else len(classes)
    if weights is not None and not (
        isinstance(weights, list | tuple) and len(weights) == n_outputs
        and all(isinstance(w, int | float) and 0 <= w < float("inf") for w in weights)
    ):  # fmt: skip
        problems.append(
            f"LOSS_CONFIG.class_weights: expected {n_outputs} finite numbers >= 0 (CLASSES), got {weights!r}"
        )
    if config["PATCH_FOREGROUND"] and config["PATCH_SIZE"] is None:
        problems.append("PATCH_FOREGROUND centres patches, but PATCH_SIZE is None (whole images): set PATCH_SIZE")
    if config["MASK_VALUES"] is not None and task == "multilabel":
        problems.append("MASK_VALUES maps one class per pixel; TASK 'multilabel' reads K-band masks: set it None")
    if config["MASK_THRESHOLD"] is not None and (task == "multiclass" or config["MASK_VALUES"] is not None):
        problems.append("MASK_THRESHOLD reads binary and multilabel masks without MASK_VALUES: set it None")
    if config["NORMALIZATION"] == "init" and config["INIT_FROM"] is None:
        problems.append("NORMALIZATION 'init' takes INIT_FROM's statistics, but INIT_FROM is None")
    loss = config["LOSS"]
    n_positional = 0 if isinstance(loss, type) or isinstance(getattr(loss, "func", None), type) else 2
    if problem := signature_problem(loss, config["LOSS_CONFIG"], n_positional):
        problems.append(f"LOSS_CONFIG: {problem}")
    if config["VAL_GROUPS"] is not None and config["VAL_DATASET"] is not None:
        problems.append("VAL_GROUPS splits DATASET, but VAL_DATASET is set: set one of them None")
    return problems


def reads_metric(scheduler: Any) -> bool:
    """Whether a scheduler (a class, a functools.partial of one, or an instance) is stepped with a value: its
    ``step`` takes a required positional argument, as ReduceLROnPlateau's ``step(metrics)`` does."""
    target = scheduler if isinstance(scheduler, type) else getattr(scheduler, "func", scheduler)
    step = getattr(target if isinstance(target, type) else type(target), "step", None)
    try:
        parameters = list(inspect.signature(step).parameters.values())[1:]  # after self
    except (TypeError, ValueError):  # no step, or one without a signature
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return bool(parameters) and parameters[0].kind in positional and parameters[0].default is inspect.Parameter.empty


def checkpoint_direction(config: dict[str, Any]) -> str:
    """CHECKPOINT_MODE, or where it is None the direction of CHECKPOINT_METRIC: min for a loss, max for a metric."""
    return config["CHECKPOINT_MODE"] or ("min" if config["CHECKPOINT_METRIC"].endswith("loss") else "max")


def scheduler_checks(config: dict[str, Any]) -> list[str]:
    """A scheduler stepped with a value reads CHECKPOINT_METRIC each epoch (training/build.py gives it the mode of
    CHECKPOINT_MODE): a ``mode`` set in SCHEDULER_CONFIG (or a partial) against that direction is refused."""
    scheduler = config["SCHEDULER"]
    if scheduler is None or not reads_metric(scheduler):
        return []
    mode = {**getattr(scheduler, "keywords", {}), **config["SCHEDULER_CONFIG"]}.get("mode")
    direction, metric = checkpoint_direction(config), config["CHECKPOINT_METRIC"]
    if mode is None or mode == direction:
        return []
    better = "lower" if direction == "min" else "higher"
    return [
        f"SCHEDULER_CONFIG: mode {mode!r} contradicts CHECKPOINT_METRIC {metric!r} ({better} is better, "
        f"CHECKPOINT_MODE {direction!r}), which the scheduler reads; leave mode out (it follows CHECKPOINT_MODE)"
    ]
