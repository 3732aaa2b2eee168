"""The hyperparameter search for real: trials as runs of every routine, pruning, stop and resume, parallel jobs,
and the search spaces that are refused before the first trial."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from test_interrupt import SLOW_CONFIG

import hyperparameter
from config.overrides import ROUTINES, load_config
from config.paths import GlobalConfig
from config.schema import validate_config
from config.serialize import to_jsonable
from training.search import finished_trials, storage

# test_interrupt.py's tiny config, whose samples take a while when SLOW_SAMPLE_S is set (so that a signal lands
# mid-search), with 8 steps an epoch (so that the learning rate makes a difference after one epoch) and 2 epochs.
TINY_CONFIG = SLOW_CONFIG + textwrap.dedent(
    """
    TRAIN_CONFIG.update(
        DATA_LOADER_CONFIG={"batch_size": 4, "num_workers": 0},
        SCHEDULER_CONFIG={"T_max": 2},
        EPOCHS=2,
    )
    """
)

# A learning rate of 0 leaves the model as it starts: the median pruner stops such a trial after its first epoch.
SPACE = textwrap.dedent(
    """
    from torch import optim

    from training.search_space import choice, integer, loguniform, uniform

    SEARCH_SPACE = {
        "OPTIMIZER": choice(optim.AdamW, optim.Adam),
        "OPTIMIZER_CONFIG.lr": choice(1e-2, 0.0),
        "OPTIMIZER_CONFIG.weight_decay": loguniform(1e-6, 1e-3),
        "MODEL_CONFIG.base_channels": integer(4, 8, step=4),
        "MODEL_CONFIG.dropout": uniform(0.0, 0.2),
    }
    """
)


@pytest.fixture(name="files")
def files_fixture(tmp_path: Path) -> dict[str, str]:
    """The tiny config and the search space as files."""
    paths = {"config": tmp_path / "tiny_config.py", "space": tmp_path / "space.py"}
    paths["config"].write_text(TINY_CONFIG, encoding="utf-8")
    paths["space"].write_text(SPACE, encoding="utf-8")
    return {name: str(path) for name, path in paths.items()}


def search_args(files: dict[str, str], routine: str, study: str, *more: str) -> list[str]:
    """hyperparameter.py options of a 4-trial search with random sampling, pruning after the first trial (an option
    given again in ``more`` wins, as argparse takes the last)."""
    return [
        *("--config", files["config"], "--space", files["space"], "--routine", routine, "--study", study),
        *("--trials", "4", "--metric", "val_dice", "--random-trials", "4", "--prune-after", "1", *more),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("routine", ROUTINES)
def test_a_search_of_four_trials_leaves_four_runs_a_table_a_best_config_and_plots(
    routine: str, global_config: GlobalConfig, files: dict[str, str], run_script
) -> None:
    proc = run_script("hyperparameter.py", *search_args(files, routine, "tiny"))
    assert proc.returncode == 0, proc.stderr

    # Every trial is a normal run: its row in experiments.csv, its history and its checkpoint.
    runs = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert runs["study"].tolist() == ["tiny"] * 4 and sorted(runs["trial"]) == [0, 1, 2, 3]
    assert set(runs["status"]) <= {"completed", "pruned"} and "completed" in set(runs["status"])
    for _, run in runs.iterrows():
        history = pd.read_csv(Path(run["run_dir"]) / "history.csv")
        assert len(history) == run["epochs_completed"] == (2 if run["status"] == "completed" else 1)
        assert (global_config.WEIGHT_DIR / run["run_name"] / "last.pt").is_file()

    # Pruning for real: the trials with lr 0 stopped after one epoch, in experiments.csv and in the study.
    study = optuna.load_study(study_name="tiny", storage=storage(global_config))
    lr_0 = [trial.number for trial in study.trials if trial.params["OPTIMIZER_CONFIG.lr"] == 0.0]
    assert study.trials[0].params["OPTIMIZER_CONFIG.lr"] > 0 and lr_0  # the seeded draws: a trial to compare with
    assert [study.trials[number].state.name for number in lr_0] == ["PRUNED"] * len(lr_0)
    assert runs.set_index("trial").loc[lr_0, "status"].tolist() == ["pruned"] * len(lr_0)

    # The table of trials, best first, with the runs' names; the same values as experiments.csv.
    out_dir = global_config.LOG_DIR / "search" / "tiny"
    table = pd.read_csv(out_dir / "trials.csv")
    assert sorted(table["trial"]) == [0, 1, 2, 3] and table.iloc[0]["state"] == "completed"
    completed = runs[runs["status"] == "completed"].set_index("trial")
    best = table.iloc[0]
    assert best["val_dice"] == pytest.approx(completed.loc[best["trial"], "best_val_dice"])
    assert best["val_dice"] == pytest.approx(completed["best_val_dice"].max())
    assert "study tiny: 4 trials, best first" in proc.stdout

    # The best config trains the best trial's config again, as it is.
    best_run = completed.loc[best["trial"]]
    config = validate_config(load_config(str(out_dir / "best_config.py")))
    trial_config = json.loads((Path(best_run["run_dir"]) / "config.json").read_text(encoding="utf-8"))["config"]
    assert to_jsonable(config) == {**trial_config, "ROUTINE": routine}
    assert (out_dir / "history.png").stat().st_size > 0
    assert (out_dir / "importance.png").is_file() == (len(completed) >= 2)


def _running_runs(experiments: Path) -> list[str]:
    """The run names whose row in experiments.csv says ``running`` (none while the file is missing or mid-write)."""
    try:
        runs = pd.read_csv(experiments)
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return []
    return list(runs.loc[runs["status"] == "running", "run_name"])


def _wait_for_running_trials(log_dir: Path, process: subprocess.Popen, count: int, timeout: float = 180) -> None:
    """Wait until ``count`` trials run at the same time (their rows say ``running``: a trial that finished before the
    other started does not count) and one of them has recorded an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        running = _running_runs(log_dir / "experiments.csv")
        if len(running) >= count and any((log_dir / name / "history.csv").is_file() for name in running):
            return
        time.sleep(0.05)
    raise TimeoutError("the trials did not start in time")


@pytest.mark.slow
def test_a_stopped_parallel_search_continues_where_it_stopped(
    global_config: GlobalConfig, files: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    routine = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]  # the quickest to start
    # 4 epochs, not 2: the trial that has recorded its first epoch is still running when the signal lands.
    config = Path(files["config"])
    config.write_text(config.read_text(encoding="utf-8").replace("EPOCHS=2,", "EPOCHS=4,"), encoding="utf-8")
    assert "EPOCHS=4," in config.read_text(encoding="utf-8")
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # waited for below
        [sys.executable, "hyperparameter.py", *search_args(files, routine, "stopped", "--jobs", "2")],
        cwd=Path(hyperparameter.__file__).parent,
        env={**os.environ, "SLOW_SAMPLE_S": "0.02"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Two trials at once, then Ctrl-C: the search passes it on to its jobs, which record their runs and end.
    _wait_for_running_trials(global_config.LOG_DIR, process, count=2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr

    runs = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert (runs["status"] == "interrupted").sum() == 2
    command = re.search(r"continue it with: \n(python hyperparameter.py .*)", stdout).group(1)
    assert command.endswith("--study stopped --resume")

    # The same options with --resume: the interrupted trials' values first, then the trials still lacking.
    assert hyperparameter.main(command.split()[2:]) == 0
    study = optuna.load_study(study_name="stopped", storage=storage(global_config))
    interrupted = [trial for trial in study.trials if trial.user_attrs.get("interrupted")]
    retries = {trial.user_attrs.get("retry_of"): trial for trial in study.trials}
    assert len(interrupted) == 2
    assert all(retries[trial.number].params == trial.params for trial in interrupted)
    assert len(finished_trials(study)) == 4
    runs = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert (runs["status"] == "interrupted").sum() == 2 and set(runs["status"]) <= {
        "interrupted",
        "completed",
        "pruned",
    }
    assert len(runs) == 6 and len(set(runs["trial"])) == 6
    assert "study stopped: 6 trials, best first" in capsys.readouterr().out

    # A resumed search must be the same search: another space is refused.
    other = Path(files["space"]).with_name("other_space.py")
    other.write_text(SPACE.replace("integer(4, 8, step=4)", "integer(4, 12, step=4)"), encoding="utf-8")
    assert hyperparameter.main([*command.split()[2:], "--space", str(other)]) == 2
    assert "differs from the study's in the search space" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_search_draws_new_values_instead_of_replaying_its_first_trials(
    global_config: GlobalConfig, files: dict[str, str]
) -> None:
    routine = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]
    common = search_args(files, routine, "again", "--epochs", "1", "--no-prune")
    assert hyperparameter.main([*common, "--trials", "2"]) == 0
    assert hyperparameter.main([*common, "--trials", "4", "--resume"]) == 0
    trials = optuna.load_study(study_name="again", storage=storage(global_config)).get_trials()
    first, resumed = [t.params for t in trials[:2]], [t.params for t in trials[2:]]
    assert len(resumed) == 2 and not any(params in first for params in resumed)  # floats drawn anew: no repeats


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(
    global_config: GlobalConfig, files: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    # Learning rates that blow the weights up: the loss turns NaN, which the routine refuses to train on.
    Path(files["space"]).write_text(
        'from training.search_space import choice\nSEARCH_SPACE = {"OPTIMIZER_CONFIG.lr": choice(1e30, 1e31)}\n',
        encoding="utf-8",
    )
    routine = "pytorch" if "pytorch" in ROUTINES else ROUTINES[0]
    assert hyperparameter.main(search_args(files, routine, "diverging", "--epochs", "1", "--trials", "2")) == 0

    runs = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert runs["status"].tolist() == ["failed", "failed"] and sorted(runs["trial"]) == [0, 1]
    # fastai puts its own words between the exception's name and its message
    assert runs["error"].str.startswith("FloatingPointError: ").all()
    assert runs["error"].str.contains("the training loss is nan at epoch 1").all()
    out = capsys.readouterr().out
    assert "no completed trial yet: no best_config.py" in out
    table = pd.read_csv(global_config.LOG_DIR / "search" / "diverging" / "trials.csv")
    assert table["state"].tolist() == ["failed", "failed"]


BAD_SPACES = [
    ('"NOPE": uniform(0.0, 1.0)', "search space key 'NOPE': unknown key 'NOPE'"),
    ('"OPTIMIZER_CONFIG.lrr": loguniform(1e-4, 1e-2)', "unexpected keyword argument 'lrr'"),
    ('"OPTIMIZER_CONFIG.lr": loguniform(1e-1, 1e-4)', "empty range: low 0.1 must be below high 0.0001"),
    ('"OPTIMIZER_CONFIG.lr": loguniform(0.0, 1e-2)', "a log scale needs low > 0"),
    (
        '"MODEL_CONFIG.base_channels": uniform(4.0, 8.0)',
        "wrong type: the config's value 4 is an int, the space gives 4.0",
    ),
    ('"EPOCHS": choice(1, "two")', "wrong type: the config's value 2 is an int, the space gives 'two'"),
    ('"OPTIMIZER": choice(optim.AdamW, optim.SGD(model.parameters()))', "an instance of SGD is not a number"),
    ('"LOSS": choice(dice_bce, lambda logits, target: logits.mean())', "cannot be imported by its name"),
    ('"LOSS": choice(dice_bce)', "a choice needs two options or more"),
    ('"OPTIMIZER_CONFIG.lr": 1e-3', "expected uniform(), loguniform(), integer() or choice(), got 0.001"),
]


BAD_SPACE_IDS = [
    "unknown-key",
    "unknown-argument",
    "empty-range",
    "log-of-zero",
    "float-for-int",
    "str-for-int",
    "instance",
    "lambda",
    "one-option",
    "not-a-distribution",
]


@pytest.mark.parametrize(("entry", "message"), BAD_SPACES, ids=BAD_SPACE_IDS)
def test_a_bad_search_space_is_refused_before_the_first_trial(
    global_config: GlobalConfig, files: dict[str, str], capsys: pytest.CaptureFixture, entry: str, message: str
) -> None:
    Path(files["space"]).write_text(
        textwrap.dedent(
            """
            from torch import nn, optim

            from training.search_space import choice, integer, loguniform, uniform
            from utils.losses import dice_bce

            model = nn.Linear(1, 1)
            SEARCH_SPACE = {"OPTIMIZER_CONFIG.weight_decay": loguniform(1e-6, 1e-3), ENTRY}
            """
        ).replace("ENTRY", entry),
        encoding="utf-8",
    )
    assert hyperparameter.main(search_args(files, ROUTINES[0], "bad")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not global_config.LOG_DIR.exists()  # nothing written: no study, no run


@pytest.mark.slow
def test_with_folds_every_trial_scores_fold_0_and_the_best_config_cross_validates(
    global_config: GlobalConfig, files: dict[str, str], run_script
) -> None:
    more = ("--trials", "2", "--set", "FOLDS=3", "--prune-after", "9")
    proc = run_script("hyperparameter.py", *search_args(files, ROUTINES[0], "folds", *more))
    assert proc.returncode == 0, proc.stderr
    assert "FOLDS=3: every trial trains fold 0 and is scored on it" in proc.stderr
    runs = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert runs["FOLDS"].tolist() == [3, 3] and runs["FOLD"].tolist() == [0, 0]
    best = global_config.LOG_DIR / "search" / "folds" / "best_config.py"
    proc = run_script("train.py", "--config", str(best))  # FOLDS kept, FOLD not: every fold
    assert proc.returncode == 0, proc.stderr
    folds = pd.read_csv(global_config.LOG_DIR / "experiments.csv").dropna(subset=["cv_name"])
    assert folds["fold"].tolist() == [0, 1, 2] and "cv_summary.csv written" in proc.stdout
