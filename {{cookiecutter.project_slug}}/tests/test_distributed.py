"""Distributed data-parallel training for real: torchrun starts 2 gloo processes on the CPU (and Ignite its own)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from user_errors import write_images

import train
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # processes of their own: torchrun, signals, kills

PROJECT_ROOT = Path(train.__file__).resolve().parent
EPOCHS, N_TRAIN, N_VAL, BATCH = 3, 48, 7, 8  # 7 validation samples: shards of 4 and 3

# Importable by name (the processes that Ignite spawns unpickle the config): a dataset that notes, by rank, each
# sample it gives, and a loss that fails on rank 1. Then train.py with each rank's final weights saved.
PROBE_MODULE = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import torch.distributed as dist

    from utils.data.synthetic import SyntheticShapes
    from utils.losses import dice_bce


    def rank():
        return dist.get_rank() if dist.is_initialized() else 0


    class LoggedShapes(SyntheticShapes):
        def __init__(self, role, **kwargs):
            super().__init__(**kwargs)
            self.role = role

        def __getitem__(self, index):
            with open(Path(os.environ["PROBE_DIR"]) / f"samples_rank{rank()}.txt", "a", encoding="utf-8") as file:
                file.write(f"{self.role} {index}\\n")
            return super().__getitem__(index)


    CALLS = []


    def loss_failing_on_rank_1(logits, target):
        CALLS.append(1)
        if rank() == 1 and len(CALLS) > 3:
            raise RuntimeError("rank 1 fails")
        return dice_bce(logits, target)
    """
)
# Outside the __main__ block, so that the processes that Ignite spawns (which import this file) save theirs too.
PROBE_MAIN = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    import torch

    import train
    from training.run import Run

    _finish = Run.finish


    def _finish_and_save(self, *args, **kwargs):
        torch.save(self.raw_model.state_dict(), Path(os.environ["PROBE_DIR"]) / f"weights_rank{self.rank}.pt")
        return _finish(self, *args, **kwargs)


    Run.finish = _finish_and_save

    if __name__ == "__main__":
        sys.exit(train.main())
    """
)
PROBE_CONFIG = textwrap.dedent(
    f"""
    from config.train_config import TRAIN_CONFIG
    from probe import LoggedShapes

    TRAIN_CONFIG = {{
        **TRAIN_CONFIG,
        "DEVICE": "cpu",
        "MODEL_CONFIG": {{**TRAIN_CONFIG["MODEL_CONFIG"], "base_channels": 4, "depth": 2}},
        "DATASET": LoggedShapes,
        "DATASET_CONFIG": {{"role": "train", "n_samples": {N_TRAIN}, "size": 32, "seed": 0}},
        "VAL_DATASET": LoggedShapes,
        "VAL_DATASET_CONFIG": {{"role": "val", "n_samples": {N_VAL}, "size": 32, "seed": 1}},
        "DATA_LOADER_CONFIG": {{"batch_size": {BATCH}, "num_workers": 0}},
        "OPTIMIZER_CONFIG": {{"lr": 0.01}},
        "SCHEDULER": None,
        "SCHEDULER_CONFIG": {{}},
        "EPOCHS": {EPOCHS},
        "EARLY_STOPPING": None,
    }}
    """
)


@pytest.fixture(name="probe")
def probe_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the probe module, its train.py and its config, on PYTHONPATH; PROBE_DIR collects its notes."""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE_MODULE)
    (folder / "probe_train.py").write_text(PROBE_MAIN)
    (folder / "probe_config.py").write_text(PROBE_CONFIG)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROJECT_ROOT), str(folder)]))
    monkeypatch.setenv("PROBE_DIR", str(folder))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on a small machine
    monkeypatch.syspath_prepend(str(folder))
    return folder


def torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=N ARGS`` from the project root."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def samples_seen(probe: Path, rank: int, role: str) -> list[int]:
    """The indices of the ``role`` dataset that ``rank`` loaded, in order."""
    lines = (probe / f"samples_rank{rank}.txt").read_text(encoding="utf-8").split("\n")
    return [int(line.split()[1]) for line in lines if line.startswith(f"{role} ")]


def check_two_ranks_trained_as_one(probe: Path, global_config: GlobalConfig, routine: str) -> None:
    """What 2 processes must leave: each its shards, the same weights, and one run written by rank 0 alone."""
    assert not (probe / "samples_rank2.txt").exists()
    # Training: each rank loads half the samples an epoch (plus the first batch of the preflight checks); rank 0
    # alone reads them all once more for the normalisation statistics, which it sends to the other rank.
    for rank in (0, 1):
        statistics = N_TRAIN if rank == 0 else 0
        assert len(samples_seen(probe, rank, "train")) == statistics + BATCH + EPOCHS * N_TRAIN // 2
    # Validation: shards without padding (4 and 3 samples), each read once an epoch, for the preflight checks' first
    # batch, and once by the pass that finds the classes of the validation targets (summed over the ranks).
    val_0, val_1 = samples_seen(probe, 0, "val"), samples_seen(probe, 1, "val")
    assert sorted(set(val_0)) == [0, 2, 4, 6] and sorted(set(val_1)) == [1, 3, 5]
    assert len(val_0) == 4 * (EPOCHS + 2) and len(val_1) == 3 * (EPOCHS + 2)

    weights = [torch.load(probe / f"weights_rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    runs = [path for path in global_config.LOG_DIR.iterdir() if path.is_dir()]
    assert len(runs) == 1 and len(list(global_config.WEIGHT_DIR.iterdir())) == 1
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    assert len(experiments) == 1
    row = experiments.iloc[0]
    assert row["status"] == "completed" and row["world_size"] == 2 and row["routine"] == routine
    assert row["epochs_completed"] == EPOCHS
    checkpoint = load_checkpoint(global_config.WEIGHT_DIR / row["run_name"] / "last.pt")
    assert checkpoint["model"].keys() == weights[0].keys()  # the bare model's names: no DDP "module." prefix
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(weights[0][name], tensor) and torch.equal(weights[1][name], tensor), name


LAUNCHES = [("torchrun", routine) for routine in ROUTINES] + [("spawn", "ignite")] * ("ignite" in ROUTINES)


@pytest.mark.parametrize(("launch", "routine"), LAUNCHES)
def test_two_processes_train_like_one_process_with_twice_the_batch(
    launch: str, routine: str, probe: Path, global_config: GlobalConfig
) -> None:
    args = ["--config", str(probe / "probe_config.py"), "--routine", routine]
    if launch == "torchrun":
        result = torchrun(str(probe / "probe_train.py"), *args)
    else:
        result = subprocess.run(
            [sys.executable, str(probe / "probe_train.py"), *args, "--nproc-per-node", "2"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("completed: best epoch") == 1  # the summary from rank 0 alone
    check_two_ranks_trained_as_one(probe, global_config, routine)

    # batch_size is per process: 2 processes of 8 train on the samples of one process's batches of 16.
    assert train.main([*args, "--set", f"DATA_LOADER_CONFIG.batch_size={2 * BATCH}"]) == 0
    experiments = pd.read_csv(global_config.LOG_DIR / "experiments.csv")
    distributed, single = experiments["final_val_dice"]
    assert single > 0.3  # a trained model, so that the comparison means something
    print(f"final val dice: {distributed:.4f} with 2 processes, {single:.4f} with one")
    assert abs(distributed - single) <= 0.03
    # the pooled value too: the ranks' pixel counts added up (exact sums over ranks: tests/test_metric_sums.py)
    assert abs(experiments["final_val_dice_pooled"][0] - experiments["final_val_dice_pooled"][1]) <= 0.03


@pytest.mark.parametrize("routine", ROUTINES)
def test_early_stopping_stops_every_rank(routine: str, probe: Path, global_config: GlobalConfig) -> None:
    # No improvement can beat a min_delta of 10: patience 1 stops all ranks after epoch 2 of 5.
    result = torchrun(
        "train.py",
        *("--config", str(probe / "probe_config.py"), "--routine", routine, "--epochs", "5"),
        *("--set", "EARLY_STOPPING={'patience': 1, 'min_delta': 10.0}"),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "completed" and row["epochs_completed"] == 2 and row["world_size"] == 2
    # rank 1 stopped after epoch 2 as well: two epochs, the preflight batch and the validation-class pass
    assert len(samples_seen(probe, 1, "val")) == 3 * (2 + 2)


def test_an_error_on_one_rank_ends_every_rank_with_a_non_zero_exit(probe: Path, global_config: GlobalConfig) -> None:
    result = torchrun(
        "train.py",
        *("--config", str(probe / "probe_config.py"), "--routine", ROUTINES[0]),
        *("--set", "LOSS=probe.loss_failing_on_rank_1"),
        timeout=180,  # the assertion is that it ends: a hanging rank 0 would time out
    )
    assert result.returncode != 0
    assert "rank 1 fails" in result.stderr
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "failed" and row["world_size"] == 2  # rank 0 recorded the end, with rank 1's cause
    assert row["error"] == "RuntimeError: rank 1 fails", row["error"]


def test_a_data_error_on_one_rank_is_the_runs_cause_and_every_ranks_line(global_config: GlobalConfig) -> None:
    """A truncated image that rank 1 alone meets in its shard, mid-epoch: rank 0 (ended by gloo or by torchrun's
    SIGTERM) records the run failed with that file's line, and both ranks print it (exit 2 each)."""
    folder = write_images(global_config.DATA_DIR / "set", 20, truncated=4)  # 4.png: in rank 1's first epoch
    result = torchrun(
        "train.py",
        *("--set", "DEVICE=cpu", "--set", "MODEL_CONFIG.depth=2", "--set", "MODEL_CONFIG.base_channels=4"),
        *("--set", "DATASET=utils.data.folder.SegmentationFolder", "--set", f"DATASET_CONFIG={{'root': '{folder}'}}"),
        *("--set", "DATA_LOADER_CONFIG.batch_size=2", "--set", "NORMALIZATION=None", "--epochs", "1"),
        timeout=180,
    )
    assert re.search(r"Root Cause.*?rank\s*: 1 ", result.stderr, re.DOTALL), result.stderr[-3000:]  # rank 1's
    assert "exitcode  : 2" in result.stderr and "exitcode  : 143" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: cannot read image " + str(folder / "images" / "4.png") + ": image file is truncated"] * 2
    assert "Connection closed" not in result.stderr, result.stderr[-3000:]
    (row,) = pd.read_csv(global_config.LOG_DIR / "experiments.csv").itertuples()
    assert row.status == "failed" and row.error == "DataError: " + errors[0].removeprefix("error: "), row


@pytest.mark.parametrize("routine", ROUTINES)
def test_every_rank_drops_its_last_batch_of_one(routine: str, global_config: GlobalConfig) -> None:
    """10 training samples on 2 ranks, 5 each in batches of 4: each rank's batch of one sample (a 1x1 bottleneck,
    where BatchNorm cannot train) is dropped, by the Run's sampler or by fastai's DistributedDL alike."""
    result = torchrun(
        "train.py",
        *("--routine", routine, "--set", "DEVICE=cpu", "--set", "MODEL_CONFIG.base_channels=4", "--epochs", "1"),
        *("--set", "MODEL_CONFIG.depth=3", "--set", "DATASET_CONFIG.size=8", "--set", "DATASET_CONFIG.n_samples=12"),
        *("--set", "DATA_LOADER_CONFIG.batch_size=4"),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("would hold 1 sample (5 a process, batch_size 4): dropped") == 1  # rank 0 says it
    row = pd.read_csv(global_config.LOG_DIR / "experiments.csv").iloc[0]
    assert row["status"] == "completed" and row["world_size"] == 2


@pytest.mark.parametrize("routine", [routine for routine in ROUTINES if routine not in train.SPAWNING_ROUTINES])
def test_nproc_per_node_is_refused_by_routines_that_torchrun_starts(
    routine: str, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    assert train.main(["--routine", routine, "--nproc-per-node", "2"]) == 2
    error = capsys.readouterr().err
    assert "torchrun --nproc_per_node=2 train.py" in error and "make train-ddp NPROC=2" in error
    assert not global_config.LOG_DIR.exists() or not any(global_config.LOG_DIR.iterdir())
