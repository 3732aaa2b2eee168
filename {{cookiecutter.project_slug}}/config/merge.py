"""How a ``--config`` file's dicts combine with config/train_config.py's: key by key, or replaced whole.

- A dict of keyword arguments (every ``*_CONFIG`` key, ``EARLY_STOPPING``, ``ONE_CYCLE``, ``COMPILE``) that the file
  sets is merged key by key into the default's: the file's keys win, the others keep the default's values, as the
  keys that the file leaves out do. ``"MODEL_CONFIG": {"out_channels": 3}`` changes the outputs of the default U-Net,
  not the U-Net (its signature's defaults would be another, 16 times bigger model).
- Where the file changes the class that a dict configures (``MODEL``, ``DATASET``, ``VAL_DATASET``, ``OPTIMIZER``,
  ``SCHEDULER``, ``LOSS``: a key ``K`` beside ``K_CONFIG``), the file's dict (``{}`` when it sets none) is the whole
  dict: another class's arguments mean something else or nothing (SGD must not get AdamW's weight_decay). One line
  names the default's arguments left out.
- ``Replace({...})`` makes a dict the whole dict under an unchanged class too.

Other values (lists, METRICS, MASK_VALUES, QUALITY_FLOOR) are the file's as they are: they are sets of names or
mappings, not arguments, and a file that lists two metrics means those two.
"""

import logging
from typing import Any

LOGGER = logging.getLogger("project")
# Dicts of keyword arguments whose names do not end in _CONFIG.
KEYWORD_DICTS = ("EARLY_STOPPING", "ONE_CYCLE", "COMPILE")


class Replace(dict):
    """A dict that replaces the default's whole, where the file keeps the class: ``"MODEL_CONFIG": Replace(
    in_channels=1, out_channels=3)`` builds ``UNet(in_channels=1, out_channels=3)`` with its signature's defaults.

    It is a dict in every other respect: checks, ``--set MODEL_CONFIG.depth=2`` and config.json (which records the
    effective dict, as JSON data) see a dict. It stays a Replace in the loaded config, so that a file that starts
    from ``load_config(this_file)`` (the search's best_config.py) replaces the default's dict too.
    """


def _name(value: Any) -> str:
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(value)


def merge_config(defaults: dict[str, Any], file_config: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` (config/train_config.py's TRAIN_CONFIG) updated with ``file_config`` (a --config file's) by the
    rule of this module: every key of either, the file's dicts of keyword arguments merged or replaced.

    Logs one line for each class that the file changes where the default's keyword arguments are left out.
    """
    merged = dict(file_config)  # a Replace stays one: a file built on this one's (best_config.py) replaces it too
    for key, value in file_config.items():
        owner = key.removesuffix("_CONFIG")
        if isinstance(value, Replace) or not (key.endswith("_CONFIG") or key in KEYWORD_DICTS):
            continue
        if owner in file_config and owner != key and file_config[owner] is not defaults.get(owner):
            continue  # the class changed: the file's dict is the whole dict (below)
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = {**defaults[key], **value}
    for owner, value in file_config.items():
        key = f"{owner}_CONFIG"
        if key not in defaults or owner not in defaults or value is defaults[owner]:
            continue
        merged.setdefault(key, {})
        if not isinstance(merged[key], dict) or not isinstance(defaults[key], dict):
            continue  # not a dict: validation says so
        if left_out := [name for name in defaults[key] if name not in merged[key]]:
            LOGGER.info(
                "%s changed to %s: %s is the file's, not merged with the default's (%s left out)",
                owner, _name(value), key, ", ".join(left_out),
            )  # fmt: skip
    return {**defaults, **merged}
