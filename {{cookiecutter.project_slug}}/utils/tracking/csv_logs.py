"""The two CSV logs of the project.

* ``logs/experiments.csv``: one row per run, upserted by run name under a file lock, so that runs started at the
  same time (or a search with parallel trials) all land and a resumed run updates its row instead of adding one.
* ``logs/<run>/history.csv``: one row per epoch, appended as the run goes.

Both are plain CSV that ``pandas.read_csv`` reads. experiments.csv is rewritten through a temporary file and an
atomic rename: a crash mid-write leaves the previous table, never half a row.
"""

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from utils.files import atomic_write

HEAD_COLUMNS = [
    "run_name",
    "session_name",
    "routine",
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "epochs_completed",
    "best_epoch",
]
# study and trial: the runs of a hyperparameter search (hyperparameter.py)
TAIL_COLUMNS = ["git_commit", "git_dirty", "device", "world_size", "run_dir", "study", "trial"]
LOCK_TIMEOUT_S = 60


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys: ``{"A": {"b": 1}}`` -> ``{"A.b": 1}``; lists become JSON."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple, Mapping)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _column_order(columns: list[str]) -> list[str]:
    """Fixed head, then best_/final_ metrics, fixed tail, then hyper-parameters in order of appearance."""
    metrics = [c for c in columns if c.startswith(("best_", "final_")) and c != "best_epoch"]
    known = set(HEAD_COLUMNS) | set(TAIL_COLUMNS) | set(metrics)
    rest = [c for c in columns if c not in known]
    return [c for c in HEAD_COLUMNS + metrics + TAIL_COLUMNS if c in columns] + rest


def upsert_experiment(path: Path, row: Mapping[str, Any]) -> None:
    """Insert ``row`` into experiments.csv, or replace the row with the same ``run_name``.

    Existing rows are read and written back as text, so their values are kept exactly as they were.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new = {key: _cell(value) for key, value in row.items()}
    with FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S):
        if path.is_file() and path.stat().st_size > 0:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
            table = table[table["run_name"] != new["run_name"]]
            table = pd.concat([table, pd.DataFrame([new])], ignore_index=True).fillna("")
        else:
            table = pd.DataFrame([new])
        table = table[_column_order(list(table.columns))]
        with atomic_write(path) as file:
            table.to_csv(file, index=False)


def append_history(path: Path, row: Mapping[str, Any]) -> None:
    """Append one epoch to history.csv, writing the header first if the file is new.

    Every row must have the columns of the first one: a run logs the same things at every epoch.
    """
    new_file = not path.is_file() or path.stat().st_size == 0
    if not new_file:
        with path.open(newline="", encoding="utf-8") as file:
            header = next(csv.reader(file))
        if header != list(row):
            raise ValueError(f"{path}: columns {list(row)} differ from the file's header {header}")
    with path.open("a", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        if new_file:
            writer.writerow(list(row))
        writer.writerow([_cell(value) for value in row.values()])
        file.flush()
        os.fsync(file.fileno())


def read_experiments(path: Path) -> pd.DataFrame:
    """experiments.csv as a DataFrame (empty if no run was recorded yet)."""
    if not path.is_file():
        return pd.DataFrame(columns=HEAD_COLUMNS)
    return pd.read_csv(path)
