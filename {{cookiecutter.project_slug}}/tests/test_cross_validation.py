"""Cross-validations that stop and go on: an interrupted one resumed, an array job's folds, torchrun, each routine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ScriptedLoss

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.folds import cross_validate
from utils.losses import dice_bce

pytestmark = pytest.mark.slow  # several cross-validations, processes of their own

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROUTINE = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]  # the loss calls counted below are the raw loop's
METRICS = ["val_dice", "val_dice_pooled", "val_iou", "val_iou_pooled"]
TINY = [
    "--epochs", "2", "--set", "MODEL_CONFIG.base_channels=4", "--set", "MODEL_CONFIG.depth=2",
    "--set", "DATASET_CONFIG={'n_samples': 30, 'size': 32, 'seed': 0}", "--set", "DATA_LOADER_CONFIG.batch_size=8",
    "--set", "DEVICE='cpu'", "--set", "LOSS=utils.losses.dice_bce",
]  # fmt: skip


def summary_of(folder: Path) -> pd.DataFrame:
    """cv_summary.csv's values, by checkpoint and metric."""
    return pd.read_csv(folder / "cv_summary.csv").set_index(["checkpoint", "metric"]).drop(columns="optimistic")


def test_an_interrupted_cross_validation_goes_on_at_its_unfinished_fold(
    tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = {**tiny_config, "DATASET_CONFIG": {"n_samples": 30, "size": 32, "seed": 0}, "FOLDS": 3}
    # A fold: the sanity check, then 2 epochs of 3 training and 2 validation batches: 11 loss calls. Call 19 is in
    # fold 1's second epoch: fold 0 done, fold 1 with last.pt of its first epoch, fold 2 not begun.
    interrupting = {**config, "LOSS": ScriptedLoss(19, KeyboardInterrupt, once=True)}
    with pytest.raises(KeyboardInterrupt), caplog.at_level("INFO", logger="project"):
        cross_validate(interrupting, global_config, ROUTINE)
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert rows[["fold", "status"]].values.tolist() == [[0, "completed"], [1, "interrupted"]]
    assert rows["epochs_completed"].tolist() == [2, 1]  # fold 1 has a last.pt: its run goes on, not a new one
    cv_name = rows["cv_name"].iloc[0]
    assert f"--resume {cv_name}" in caplog.text  # the line that says how to continue names the cross-validation
    fold_0 = (global_config.LOG_DIR / rows["run_name"].iloc[0] / "history.csv").read_bytes()
    assert not (global_config.LOG_DIR / cv_name / "cv_summary.csv").exists()

    result = cross_validate(interrupting, global_config, ROUTINE, resume="latest")
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert rows[["fold", "status", "epochs_completed"]].values.tolist() == [
        [0, "completed", 2],
        [1, "completed", 2],
        [2, "completed", 2],
    ]  # fold 1 continued in its own run (no row more), fold 0 not trained again
    assert (global_config.LOG_DIR / rows["run_name"].iloc[0] / "history.csv").read_bytes() == fold_0
    # The same figures as a cross-validation that nobody stopped (the same loss, without its plan)
    straight = cross_validate({**config, "LOSS": dice_bce}, global_config, ROUTINE)
    assert straight.run_name != result.run_name
    pd.testing.assert_frame_equal(summary_of(result.run_dir), summary_of(straight.run_dir), atol=1e-6)


def run_fold(fold: int, venv: Path) -> subprocess.Popen:
    """slurm/train_folds.sbatch as the array job's task ``fold`` runs it (3 folds), with a stand-in venv whose
    activate script puts this Python first on the PATH; LOG_DIR... come from the global_config fixture."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_ARRAY_TASK_ID": str(fold), "FOLDS": "3", "VENV": str(venv)}
    return subprocess.Popen(  # pylint: disable=consider-using-with  # waited for by the caller
        ["bash", "slurm/train_folds.sbatch", *TINY],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_an_array_jobs_folds_make_one_cross_validation_and_the_last_writes_its_summary(
    global_config: GlobalConfig, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n', encoding="utf-8")
    first = [run_fold(fold, venv) for fold in (0, 1)]  # two at once: cv.json is shared under a lock
    outputs = [process.communicate(timeout=240)[0] for process in first]
    assert [process.returncode for process in first] == [0, 0], outputs
    folders = [path for path in global_config.LOG_DIR.iterdir() if (path / "cv.json").is_file()]
    assert len(folders) == 1 and not (folders[0] / "cv_summary.csv").exists()
    assert all(" incomplete: fold(s) " in out and "2 still to train: no summary yet" in out for out in outputs)
    last = run_fold(2, venv)
    output = last.communicate(timeout=240)[0]
    assert last.returncode == 0 and "cv_summary.csv written" in output, output
    runs = json.loads((folders[0] / "cv.json").read_text())["runs"]
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv").set_index("run_name")
    assert sorted(runs) == ["0", "1", "2"] and [rows.loc[runs[f], "fold"] for f in "012"] == [0, 1, 2]
    before = (folders[0] / "cv_summary.csv").read_text()
    again = run_fold(1, venv)  # a task requeued after its fold was done: nothing trained again (--resume latest)
    output = again.communicate(timeout=240)[0]
    assert again.returncode == 0 and len(pd.read_csv(global_config.LOG_DIR / "experiments.csv")) == 3, output
    assert (folders[0] / "cv_summary.csv").read_text() == before


LAUNCHES = ["torchrun"] + ["spawn"] * ("ignite" in ROUTINES)  # Ignite's --nproc-per-node spawns its own


@pytest.mark.parametrize("launch", LAUNCHES)
def test_each_fold_trains_with_two_processes(launch: str, global_config: GlobalConfig) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py"]
    if launch == "spawn":
        command = [sys.executable, "train.py", "--routine", "ignite", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*command, "--folds", "2", *TINY], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert rows["fold"].tolist() == [0, 1] and rows["world_size"].tolist() == [2, 2]
    summary = summary_of(global_config.LOG_DIR / rows["cv_name"].iloc[0])
    for row in rows.itertuples():  # rank 0 scored each fold alone: the figures of its history, summed over ranks
        history = pd.read_csv(Path(row.run_dir) / "history.csv")
        for metric in METRICS:
            assert summary.loc[("last.pt", metric), f"fold_{row.fold}"] == pytest.approx(
                history[metric].iloc[-1], abs=1e-6
            )


@pytest.mark.parametrize("routine", [routine for routine in ROUTINES if routine != ROUTINE])
def test_every_routine_cross_validates(routine: str, tiny_config: dict, global_config: GlobalConfig) -> None:
    config = {**tiny_config, "DATASET_CONFIG": {"n_samples": 30, "size": 32, "seed": 0}, "FOLDS": 2}
    result = cross_validate(config, global_config, routine)
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert rows["routine"].tolist() == [routine] * 2 and rows["fold"].tolist() == [0, 1]
    summary = summary_of(result.run_dir)
    for row in rows.itertuples():
        history = pd.read_csv(Path(row.run_dir) / "history.csv")
        assert summary.loc[("last.pt", "val_dice"), f"fold_{row.fold}"] == pytest.approx(
            history["val_dice"].iloc[-1], abs=1e-6
        )


def test_a_fold_whose_weights_or_record_are_lost_is_made_whole_again(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    config = {**tiny_config, "DATASET_CONFIG": {"n_samples": 30, "size": 32, "seed": 0}, "FOLDS": 2}
    first = cross_validate(config, global_config, ROUTINE)
    runs = json.loads((first.run_dir / "cv.json").read_text())["runs"]
    (first.run_dir / "cv.json").unlink()  # rebuilt from experiments.csv, not left without runs
    (global_config.WEIGHT_DIR / runs["1"] / "last.pt").unlink()  # fold 1 cannot be predicted with: trained again
    again = cross_validate(config, global_config, ROUTINE, resume="latest")
    rebuilt = json.loads((first.run_dir / "cv.json").read_text())["runs"]
    assert again.status == "completed" and rebuilt["0"] == runs["0"] and rebuilt["1"] != runs["1"]
    assert (global_config.WEIGHT_DIR / rebuilt["1"] / "last.pt").is_file()
    assert json.loads((first.run_dir / "fold_1.json").read_text())["run_name"] == rebuilt["1"]  # scored anew
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert rows["fold"].tolist() == [0, 1, 1] and set(rows["status"]) == {"completed"}
