"""The search space: the distributions a config key can be drawn from, and their checks against the config.

A search space maps TRAIN_CONFIG's keys, dotted for keyword arguments (``"OPTIMIZER_CONFIG.lr"``), to a
distribution: :func:`uniform`, :func:`loguniform`, :func:`integer` or :func:`choice`. :func:`check_space` refuses a
space that could not run before the first trial; :func:`describe_space` stores it with a study.
"""

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from config.overrides import set_key
from config.schema import all_keys, validate_config
from config.serialize import ConfigError, dotted_name, import_object, to_jsonable

Plain = None | bool | int | float | str  # what Optuna stores as a choice; classes and functions go by dotted name

# ---------------------------------------------------------------------------------------------------------------------
# The distributions of a search space
# ---------------------------------------------------------------------------------------------------------------------


class Distribution:
    """What a search space maps a config key to."""

    def problem(self) -> str | None:
        """What is wrong with the distribution itself (None when nothing is)."""
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """The values that the config is checked with before the first trial."""
        raise NotImplementedError

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The trial's value for ``name``."""
        raise NotImplementedError


def _is_number(value: Any, kind: tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


@dataclass(frozen=True)
class Float(Distribution):
    """A float between ``low`` and ``high``, sampled on a log scale when ``log`` is true."""

    low: float
    high: float
    log: bool = False

    def problem(self) -> str | None:
        if not (_is_number(self.low) and _is_number(self.high)):
            return f"low and high must be numbers, got {self.low!r} and {self.high!r}"
        if self.low >= self.high:
            return f"empty range: low {self.low!r} must be below high {self.high!r}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got {self.low!r}"
        return None

    def extremes(self) -> list[Any]:
        return [float(self.low), float(self.high)]

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int(Distribution):
    """An int from ``low`` to ``high`` (both included) in steps of ``step``, or on a log scale."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def problem(self) -> str | None:
        if not all(_is_number(value, (int,)) for value in (self.low, self.high, self.step)):
            return f"low, high and step must be ints, got {self.low!r}, {self.high!r} and {self.step!r}"
        if self.low >= self.high:
            return f"empty range: low {self.low!r} must be below high {self.high!r}"
        if self.step < 1 or (self.log and self.step != 1):
            return f"step must be >= 1 (and 1 on a log scale), got {self.step!r}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got {self.low!r}"
        return None

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


def is_plain(value: Any) -> bool:
    """Whether Optuna stores ``value`` as it is: None, a bool, a number or a string."""
    return value is None or isinstance(value, (bool, int, float, str))


def _encode(option: Any) -> Plain:
    """A choice's option as Optuna stores it: plain values as they are, classes and functions by dotted name."""
    return option if is_plain(option) else dotted_name(option)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``options``: numbers, strings, booleans, None, or classes and functions that can be imported."""

    options: tuple[Any, ...]

    def problem(self) -> str | None:
        if len(self.options) < 2:
            return f"a choice needs two options or more, got {list(self.options)!r}"
        for option in self.options:
            if is_plain(option):
                continue
            if not (isinstance(option, type) or inspect.isroutine(option)):
                return f"an instance of {type(option).__name__} is not a number, string, bool, None, class or function"
            try:
                importable = import_object(dotted_name(option)) is option
            except ImportError:
                importable = False
            if not importable:
                return (
                    f"option {option!r} cannot be imported by its name {dotted_name(option)!r}; "
                    "define it at the top level of a module"
                )
        encoded = [_encode(option) for option in self.options]
        if len(set(encoded)) < len(encoded):
            return f"options repeat: {encoded}"
        return None

    def extremes(self) -> list[Any]:
        return list(self.options)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        encoded = [_encode(option) for option in self.options]
        return self.options[encoded.index(trial.suggest_categorical(name, encoded))]


def uniform(low: float, high: float) -> Float:
    """A float drawn evenly between ``low`` and ``high``: ``"MODEL_CONFIG.dropout": uniform(0.0, 0.3)``."""
    return Float(low, high)


def loguniform(low: float, high: float) -> Float:
    """A float drawn evenly on a log scale (as many 1e-4..1e-3 as 1e-2..1e-1): learning rates, weight decays."""
    return Float(low, high, log=True)


def integer(low: int, high: int, step: int = 1, log: bool = False) -> Int:
    """An int from ``low`` to ``high``, both included: ``"MODEL_CONFIG.bulk_ch": integer(8, 32, step=8)``."""
    return Int(low, high, step, log)


def choice(*options: Any) -> Choice:
    """One of ``options``: ``"OPTIMIZER": choice(optim.AdamW, optim.SGD)``, ``"LOSS": choice(dice_bce, dice_loss)``."""
    return Choice(tuple(options))


# ---------------------------------------------------------------------------------------------------------------------
# Checking a search space against the config, before the first trial
# ---------------------------------------------------------------------------------------------------------------------


def _get_key(config: Mapping[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _type_problem(current: Any, value: Any) -> str | None:
    """Whether ``value`` can take the place of the config's ``current`` value (None: it can, or nothing to compare)."""
    kinds = [
        (bool, lambda v: isinstance(v, bool), "True or False"),
        (int, lambda v: _is_number(v, (int,)), "an int"),
        (float, _is_number, "a number"),
        (str, lambda v: isinstance(v, str), "a string"),
        (type, lambda v: isinstance(v, type), "a class"),
    ]
    for kind, fits, name in kinds:
        if isinstance(current, kind):
            return None if fits(value) else f"the config's value {current!r} is {name}, the space gives {value!r}"
    if callable(current) and not callable(value):
        return f"the config's value is a function, the space gives {value!r}"
    return None


def check_space(space: Any, config: dict[str, Any], refused: Mapping[str, str] | None = None) -> None:
    """Refuse a search space that could not run, with a ConfigError that names the key, before anything is written.

    Checked: the space is a dict of distributions over keys of the config's schema; each distribution is sound
    (a range that is not empty, options that can be imported); each extreme value has the config value's type, and
    the config with it passes :func:`validate_config` (e.g. OPTIMIZER_CONFIG.<arg> is an argument of OPTIMIZER).
    """
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"the search space must be a non-empty dict of config key -> distribution, got {space!r}")
    validate_config(config, refused)
    for key, distribution in space.items():
        where = f"search space key {key!r}"
        if not isinstance(key, str) or key.split(".")[0] not in all_keys():
            raise ConfigError(
                f"{where}: unknown key {str(key).split('.', maxsplit=1)[0]!r} (see train.py --help for the keys)"
            )
        if not isinstance(distribution, Distribution):
            raise ConfigError(f"{where}: expected uniform(), loguniform(), integer() or choice(), got {distribution!r}")
        problem = distribution.problem()
        if problem:
            raise ConfigError(f"{where}: {problem}")
        current = _get_key(config, key)
        for value in distribution.extremes():
            problem = _type_problem(current, value)
            if problem:
                raise ConfigError(f"{where}: wrong type: {problem}")
            changed = copy.deepcopy(config)
            try:
                set_key(changed, key, value)
                validate_config(changed, refused)
            except ConfigError as err:
                raise ConfigError(f"{where} = {value!r}: {err}") from None


def describe_space(space: Mapping[str, Distribution]) -> dict[str, str]:
    """The space as text, stored with a study so that a resumed search can be checked against it."""
    return {key: repr(to_jsonable(vars(distribution))) for key, distribution in space.items()}
