"""Cross-validation: a run per fold of DATASET, each scored on the images it did not train on; cv_summary.csv.

``train.py --folds K`` trains every fold in turn, ``--fold I`` one (a cluster's array job: slurm/train_folds.sbatch),
``--resume`` continues an interrupted cross-validation at its unfinished fold. A fold is an ordinary run: its folder,
its checkpoints, its experiments.csv row tagged ``cv_name`` and ``fold``. A cross-validation is named by its config
(SESSION_NAME, routine, K and a hash of what is trained), so that an array job's processes and a later --resume find
the same one. Its folder LOG_DIR/<cv_name>/ holds cv.json (its config and each fold's run), folds.csv (each sample's
fold) and what training/cv_scores.py writes: fold_<i>.json (a fold's scores), out_of_fold.csv (every image scored by
the model that did not train on it) and cv_summary.csv (per metric the folds' mean and standard deviation and the
out-of-fold value). The headline is last.pt's: best.pt and early stopping chose on the very images they are scored
on, so their figures are reported beside, ``optimistic``.
"""

import functools
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

import extensions
from config.device import get_device
from config.paths import GlobalConfig
from config.schema import SCHEMA, validate_config
from config.serialize import ConfigError, to_jsonable
from training import data, distributed
from training.build import LOGGER, instantiate
from training.checkpoint import RESUMABLE_CHANGES, CheckpointError, check_resume_config
from training.cv_scores import score_fold, scored, summarize
from training.records import RunResult
from training.sanity_checks import check_fold_classes
from utils.data.images import DataError
from utils.files import atomic_write, hold_lock, safe_name
from utils.tracking.csv_logs import read_experiments


def cv_name(jsonable_config: dict[str, Any], routine: str) -> str:
    """``<SESSION_NAME>_<routine>_cv<K>_<hash>``: the hash of the routine and the keys that change what is trained
    (not FOLD, nor what a resumed run may change), so that one config always names one cross-validation."""
    kept = {k: v for k, v in jsonable_config.items() if k in SCHEMA and k not in (*RESUMABLE_CHANGES, "FOLD")}
    digest = hashlib.sha1(json.dumps([routine, kept], sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe_name(jsonable_config['SESSION_NAME'])}_{routine}_cv{jsonable_config['FOLDS']}_{digest}"


class FoldHook:
    """A fold's part in its run: ``cv_name`` and ``fold`` in its experiments.csv row, its run in cv.json from its
    start, and ``--resume <cv_name>`` in the line that says how to continue it. It holds data only, so it may go
    to the processes that Ignite spawns (``multiprocess``)."""

    multiprocess = True

    def __init__(self, cv: "CrossValidation", fold: int) -> None:
        self.cv, self.fold = cv, fold
        self.columns, self.resume_name = {"cv_name": cv.name, "fold": fold}, cv.name

    def on_start(self, run: Any) -> None:
        """Record the fold's run in cv.json."""
        self.cv.update(runs={str(self.fold): run.recorder.run_name})


@dataclass
class CvResult(RunResult):
    """What :func:`cross_validate` returns: ``run_name`` is the cross-validation's, ``run_dir`` its folder."""

    summary: pd.DataFrame | None = None
    missing: list[int] = field(default_factory=list)  # the folds not scored yet (an array job's other tasks)

    def report(self) -> str:
        """Where the cross-validation's files are, and whether its summary is written."""
        done = f"fold(s) {', '.join(map(str, self.missing))} still to train: no summary yet"
        done = "cv_summary.csv written" if self.summary is not None else done
        return f"cross-validation {self.run_name} {self.status}: {done}\nlogs: {self.run_dir}"


@dataclass
class CrossValidation:
    """One cross-validation's folder and files; ``config`` is validated, ``jsonable`` its JSON form (FOLD None)."""

    name: str
    config: dict[str, Any]
    jsonable: dict[str, Any]
    global_config: GlobalConfig

    @property
    def folder(self) -> Path:
        """LOG_DIR/<cv_name>."""
        return self.global_config.LOG_DIR / self.name

    def update(self, **changes: dict[str, str]) -> dict[str, Any]:
        """cv.json with ``changes`` merged into its dicts, written atomically under a lock (array jobs share it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "cv.json"
        with FileLock(self.folder / ".cv.lock", timeout=60):
            state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            state = {"cv_name": self.name, "folds": self.config["FOLDS"], "runs": {}, "config": self.jsonable, **state}
            for key, value in changes.items():
                state[key] = {**state[key], **value}
            with atomic_write(path) as file:
                file.write(json.dumps(state, indent=2) + "\n")
        return state

    def open(self) -> None:
        """Write cv.json and folds.csv, or check that today's folds are still those of folds.csv (rank 0 only).

        Raises:
            ConfigError: the data changed since the folds were made (another split would mix the folds' images).
        """
        dataset = instantiate(self.config, "DATASET")
        folds, presence = data.fold_assignment(self.config, dataset)  # too few samples or groups: refused
        check_fold_classes(self.config, folds, presence)  # before any write, and before any fold trains
        self.update(runs={str(fold): name for fold, (name, _) in self.fold_runs().items()})  # a lost cv.json too
        pairs = getattr(dataset, "pairs", None)
        table = pd.DataFrame({"image": [Path(p[0]).stem for p in pairs] if pairs else range(len(folds)), "fold": folds})
        path = self.folder / "folds.csv"
        if not path.is_file():
            with atomic_write(path) as file:
                table.to_csv(file, index=False)
        elif not table.astype(str).equals(pd.read_csv(path, dtype=str, keep_default_na=False)):
            raise ConfigError(
                f"the data of cross-validation {self.name} changed since its folds were made ({path}): restore it, "
                "or start a new cross-validation (another SESSION_NAME)"
            )

    def fold_runs(self) -> dict[int, tuple[str, str]]:
        """Fold -> (its latest run's name, status), from experiments.csv."""
        rows = read_experiments(self.global_config.LOG_DIR / "experiments.csv")
        if "cv_name" not in rows:
            return {}
        rows = rows[rows["cv_name"] == self.name].sort_values("started_at")
        return {int(row.fold): (str(row.run_name), str(row.status)) for row in rows.itertuples()}

    def claim(self, fold: int) -> FileLock:
        """The fold's lock, held while it trains and is scored: one process a fold (an array task run twice).

        Raises:
            ConfigError: another process holds it, naming its pid.
        """
        return hold_lock(self.folder / f".fold_{fold}.lock", f"fold {fold} of cross-validation {self.name}")


def cross_validate(
    config: dict[str, Any], global_config: GlobalConfig, routine: str, resume: str | None = None, **options: Any
) -> CvResult:
    """Train the folds of FOLDS (only FOLD's when it is set) with ``routine``, score each on its own validation
    images and, once all are, write cv_summary.csv. ``resume``: ``latest`` or this config's cross-validation name;
    ``options`` go to the routine's ``train`` (``nproc_per_node``).

    Raises:
        ConfigError: the config is invalid, the data changed since the folds were made, or a fold to train has a
            run already and ``resume`` is None.
        CheckpointError: ``resume`` names another cross-validation, or one of another config.
    """
    validated = validate_config(config)  # before anything is written
    jsonable = to_jsonable({**validated, "FOLD": None})
    cv = CrossValidation(cv_name(jsonable, routine), validated, jsonable, global_config)
    if resume not in (None, "latest", cv.name):
        other = global_config.LOG_DIR / str(resume) / "cv.json"
        if not other.is_file():
            raise CheckpointError(f"--resume {resume}: no cross-validation of that name (this config's is {cv.name})")
        check_resume_config({"run_name": resume, **json.loads(other.read_text(encoding="utf-8"))}, jsonable)
    distributed.init_distributed(get_device(validated["DEVICE"]))  # rank 0 alone writes the files
    is_zero = distributed.rank_and_world_size()[0] == 0
    distributed.on_rank_zero(cv.open, (ConfigError, DataError))
    runs = distributed.broadcast_object(cv.fold_runs())
    todo = [fold for fold in range(validated["FOLDS"]) if validated["FOLD"] in (None, fold)]
    if resume is None and (started := [fold for fold in todo if fold in runs]):
        raise ConfigError(
            f"cross-validation {cv.name} has run(s) for fold(s) {', '.join(map(str, started))} already: continue it "
            f"with --resume {cv.name}, or change the config (or SESSION_NAME) for a new one"
        )
    if resume is not None and not runs:
        LOGGER.info("cross-validation %s has no run yet: --resume starts it", cv.name)
    train = importlib.import_module(f"training.{routine}_training").train
    for fold in todo:
        lock = distributed.on_rank_zero(functools.partial(cv.claim, fold), (ConfigError,))
        try:  # read again under the lock: another process may have trained the fold since
            run_name, status = distributed.broadcast_object(cv.fold_runs().get(fold, (None, None)))
            last = run_name is not None and (global_config.run_weight_dir(run_name) / "last.pt").is_file()
            if status != "completed" or not last:
                if status == "completed":
                    LOGGER.warning("fold %d: run %s has no last.pt any more: the fold is trained again", fold, run_name)
                LOGGER.info("cross-validation %s: fold %d of %d%s", cv.name, fold, validated["FOLDS"],
                            f", continuing run {run_name}" if last else "")  # fmt: skip
                resumed = run_name if last and status != "completed" else None
                hooks = [FoldHook(cv, fold)]
                run_name = train(
                    {**config, "FOLD": fold}, global_config, resume=resumed, hooks=hooks, **options
                ).run_name
            if is_zero and not scored(cv, fold, str(run_name)):
                score_fold(cv, fold, str(run_name))
        finally:
            if lock is not None:
                lock.release()
    summary = summarize(cv) if is_zero else None
    if summary is not None:
        extensions.cross_validated(cv.folder, global_config.LOG_DIR)  # e.g. the summary to the folds' tracking
    missing = [fold for fold in range(validated["FOLDS"]) if not (cv.folder / f"fold_{fold}.json").is_file()]
    status = "completed" if summary is not None else "incomplete"
    return CvResult(cv.name, status, cv.folder, global_config.WEIGHT_DIR, len(todo), None, summary=summary,
                    missing=missing)  # fmt: skip
