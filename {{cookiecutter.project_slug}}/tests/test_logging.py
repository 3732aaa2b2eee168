"""The CSV logs: concurrent runs all land, existing rows are kept as written, history columns are fixed."""

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from utils.files import atomic_write, create_unique_dir, latest_run_dir, make_run_name, safe_name
from utils.tracking.csv_logs import append_history, flatten, upsert_experiment


def _write_rows(path: Path, worker: int, n_rows: int) -> None:
    for i in range(n_rows):
        upsert_experiment(path, {"run_name": f"w{worker}-{i}", "status": "completed", f"only_w{worker}": i})


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    path = tmp_path / "experiments.csv"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_rows, args=(path, worker, 15)) for worker in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    table = pd.read_csv(path)
    assert sorted(table["run_name"]) == sorted(f"w{w}-{i}" for w in range(3) for i in range(15))
    assert {"only_w0", "only_w1", "only_w2"} <= set(table.columns)


def test_upsert_replaces_the_row_of_the_same_run_and_keeps_others_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "experiments.csv"
    upsert_experiment(path, {"run_name": "a", "status": "completed", "lr": 0.1 + 0.2, "note": 'x, "quoted"'})
    upsert_experiment(path, {"run_name": "b", "status": "running"})
    upsert_experiment(path, {"run_name": "b", "status": "completed", "best_val_dice": 0.9})
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert table["run_name"].tolist() == ["a", "b"]
    assert table.loc[1, "status"] == "completed"
    assert table.loc[0, "lr"] == repr(0.1 + 0.2) and table.loc[0, "note"] == 'x, "quoted"'
    assert list(table.columns[:3]) == ["run_name", "status", "best_val_dice"]


def test_history_refuses_rows_with_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    append_history(path, {"epoch": 1, "train_loss": 0.5})
    append_history(path, {"epoch": 2, "train_loss": 0.25})
    with pytest.raises(ValueError, match="differ from the file's header"):
        append_history(path, {"epoch": 3, "val_loss": 0.1})
    assert pd.read_csv(path)["train_loss"].tolist() == [0.5, 0.25]


def test_flatten_uses_dotted_keys() -> None:
    assert flatten({"A": {"b": 1, "c": {"d": 2}}, "E": [1, 2], "F": {}}) == {
        "A.b": 1,
        "A.c.d": 2,
        "E": "[1, 2]",
        "F": "{}",
    }


def test_run_names_and_folders(tmp_path: Path) -> None:
    name = make_run_name("my session/1", "pytorch")
    assert name.endswith("_my-session-1_pytorch") and len(name.split("_")[0]) == 15
    assert safe_name("  ../..  ") == "run"
    first, second = create_unique_dir(tmp_path, name), create_unique_dir(tmp_path, name)
    assert first.name == name and second.name == f"{name}-2"
    (first / "best.pt").touch()
    assert latest_run_dir(tmp_path, "best.pt") == first
    assert latest_run_dir(tmp_path / "none", "best.pt") is None


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(path) as file:
        file.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with atomic_write(path) as file:
        file.write("new\n")
    assert path.read_text() == "new\n"
