"""Checkpoints: one format for every routine, written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict: ``format_version``, ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts),
``epoch`` (the last one trained, from 1), ``best`` ({metric, mode, value, epoch}), ``config`` (as JSON data, see
config/serialize.py), ``routine``, ``run_name``, ``rng`` (Python, NumPy and torch states), ``normalization`` (the
per-band statistics that training applied and predict/evaluate apply; None: none) and ``extensions`` (each
extension hook's own state). Version 1 (the template before its redesign) is read too: its model keys are renamed.
"""

import functools
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config.paths import GlobalConfig
from config.schema import SCHEMA
from training import distributed
from training.build import LOGGER, SCHEDULE_LENGTH
from utils.files import atomic_write, latest_run_dir
from utils.tracking.csv_logs import flatten

FORMAT_VERSION = 2
# Version 1's U-Net arguments -> version 2's (the layers kept their names, so the weights load as they are).
V1_MODEL_ARGUMENTS = {
    "ch_in": "in_channels",
    "ch_out": "out_channels",
    "bulk_ch": "base_channels",
    "n_recursions": "depth",
    "activ": "activation",
}


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of this project's; the message is one line."""


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch, in types that ``torch.load(weights_only=True)`` accepts."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`get_rng_state`."""
    random.setstate(state["python"])
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically: a process killed while saving, or a full disk, leaves the previous file whole.

    Raises:
        OSError: naming ``path`` (a full disk: ENOSPC; a file size limit: EFBIG), also where torch's zip writer
            hides it behind its own RuntimeError ("unexpected pos") as it closes the archive.
    """
    try:
        with atomic_write(path, "wb") as file:
            torch.save(checkpoint, file)
    except (OSError, RuntimeError) as err:
        cause = err if isinstance(err, OSError) else err.__context__
        if not isinstance(cause, OSError) or cause.filename:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from err


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code runs); a version 1 checkpoint is upgraded.

    Raises:
        CheckpointError: a missing or unreadable file, not a checkpoint of this project, or a newer format.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file; its text advises unsafe loading
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint ({_load_reason(err)})"
        ) from None
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no format_version/model)")
    version = checkpoint["format_version"]
    if version == 1:
        if not isinstance(checkpoint.get("config"), dict) or "MODEL_CONFIG" not in checkpoint["config"]:
            raise CheckpointError(f"{path}: a format 1 checkpoint without its config; it cannot be rebuilt")
        return _upgrade_v1(checkpoint)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this project reads {FORMAT_VERSION} and 1: "
            "use the project version that wrote it"
        )
    return checkpoint


def _load_reason(err: Exception) -> str:
    """What torch.load found wrong, without its advice to load the file with ``weights_only=False`` (which would run
    any code the file holds): the unpickler's own reason when torch wraps it in that advice."""
    text = str(err).split("WeightsUnpickler error:", 1)[-1].strip()
    line = text.splitlines()[0] if text else ""
    return line[:120] if line and "weights_only" not in line else type(err).__name__


def _upgrade_v1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the U-Net's arguments renamed (use_shuffle -> upsampling), no extension states."""
    model_config = {
        V1_MODEL_ARGUMENTS.get(key, key): value for key, value in checkpoint["config"]["MODEL_CONFIG"].items()
    }
    if "use_shuffle" in model_config:
        model_config["upsampling"] = "pixel_shuffle" if model_config.pop("use_shuffle") else "transposed"
    config = {key: value for key, value in checkpoint["config"].items() if key not in ("NOTIFY", "TENSORBOARD")}
    config["MODEL_CONFIG"] = model_config
    return {**checkpoint, "config": config, "format_version": FORMAT_VERSION, "extensions": {}}


def find_checkpoint(name: str | Path, global_config: GlobalConfig, file: str = "last.pt") -> Path:
    """``latest``, a run name or a checkpoint path -> the checkpoint file (``file`` of the run's weights folder).

    Raises:
        CheckpointError: there is no such run or file.
    """
    if str(name) == "latest":
        run = latest_run_dir(global_config.WEIGHT_DIR, file)
        if run is None:
            raise CheckpointError(f"{name}: no run with a {file} in {global_config.WEIGHT_DIR}; train first")
        return run / file
    path = Path(name)
    if path.is_file():
        return path
    run_checkpoint = global_config.WEIGHT_DIR / str(name) / file
    if run_checkpoint.is_file():
        return run_checkpoint
    raise CheckpointError(f"{name}: neither a checkpoint file nor a run with {run_checkpoint}")


def make_checkpoint(run: Any, epoch: int) -> dict[str, Any]:
    """The checkpoint of ``run`` (a training.run.Run) after ``epoch``."""
    return {
        "format_version": FORMAT_VERSION,
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "best": {"metric": run.config["CHECKPOINT_METRIC"], "value": run.best_value, "epoch": run.best_epoch},
        "config": run.jsonable_config,
        "routine": run.routine,
        "run_name": run.recorder.run_name,
        "rng": get_rng_state(),
        "normalization": run.normalization,
        "extensions": {type(hook).__name__: hook.state_dict() for hook in run.hooks if hasattr(hook, "state_dict")},
    }


def load_for_resume(name: str | Path, global_config: GlobalConfig, routine: str) -> dict[str, Any]:
    """The checkpoint to resume (``latest``, a run name or a path), checked to be this routine's."""
    try:
        state = load_checkpoint(find_checkpoint(name, global_config))
    except CheckpointError as err:
        raise CheckpointError(f"--resume {err}") from None
    if state["routine"] != routine:
        raise CheckpointError(
            f"run {state['run_name']} was trained by the {state['routine']!r} routine; resume it with "
            f"--routine {state['routine']}"
        )
    return state


def load_init_from(name: str | Path, global_config: GlobalConfig) -> dict[str, Any]:
    """INIT_FROM's checkpoint: a path, or a run name (its best.pt), or ``latest``."""
    try:
        return load_checkpoint(find_checkpoint(name, global_config, "best.pt"))
    except CheckpointError as err:
        raise CheckpointError(f"INIT_FROM (--init-from) {err}") from None


def init_weights(model: torch.nn.Module, source: dict[str, Any], name: str) -> list[str]:
    """Load ``source``'s weights into ``model`` where names and shapes match; the others (a new head for other
    classes, a first layer for other bands) keep their fresh initialisation and are listed in one log line.

    Returns:
        the names of the tensors left initialised.
    """
    own = model.state_dict()
    matching = {key: value for key, value in source["model"].items() if key in own and own[key].shape == value.shape}
    model.load_state_dict(matching, strict=False)
    kept = sorted(set(own) - set(matching))
    LOGGER.info(
        "INIT_FROM %s: %d of %d tensors loaded%s", name, len(matching), len(own),
        f"; left initialised (other shapes or new): {', '.join(kept)}" if kept else "",
    )  # fmt: skip
    return kept


def read_sources(
    config: dict[str, Any], resume: str | Path | None, global_config: GlobalConfig, routine: str,
    jsonable_config: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:  # fmt: skip
    """The checkpoint to resume (checked against the config) and the one whose weights and statistics start the
    run (the same, or INIT_FROM's), each None when there is none. Rank 0 reads it and sends it to the others
    (other nodes may not see its disk); one it cannot load is the same one-line error on every rank."""
    if resume is not None:
        load = functools.partial(load_for_resume, resume, global_config, routine)
    elif config["INIT_FROM"] is not None:
        load = functools.partial(load_init_from, config["INIT_FROM"], global_config)
    else:
        return None, None
    source = distributed.broadcast_object(distributed.on_rank_zero(load, (CheckpointError,)))
    if resume is None:
        return None, source
    check_resume_config(source, jsonable_config)
    return source, source


# What a resumed run may change; any other difference would silently make it another experiment.
RESUMABLE_CHANGES = ("EPOCHS", "DEVICE", "COMMENT", "LOGFILE")


def check_resume_config(state: dict[str, Any], jsonable_config: dict[str, Any]) -> None:
    """Refuse to resume a run with a config that differs from its own, other than in RESUMABLE_CHANGES.

    Keys of extensions (e-mail, TensorBoard) may change too: they do not change what is trained. Keys that the
    run's project did not have yet (TASK, NORMALIZATION, ... before the project had them) take today's values.
    """
    before, now = flatten(state["config"]), flatten(jsonable_config)
    fixed = (set(SCHEMA) & set(state["config"])) - set(RESUMABLE_CHANGES)
    changed = sorted(k for k in before.keys() | now.keys() if k.split(".")[0] in fixed and before.get(k) != now.get(k))
    one_cycle = state["config"].get("ONE_CYCLE")
    if one_cycle is not None and state["config"]["EPOCHS"] != jsonable_config["EPOCHS"]:
        raise CheckpointError(
            f"--resume {state['run_name']}: ONE_CYCLE's schedule spans the run's {state['config']['EPOCHS']} epochs "
            "and cannot be stretched; resume with the run's own EPOCHS, or start a new run with more epochs"
        )
    if changed:
        differences = ", ".join(f"{key} (run: {before.get(key)!r}, now: {now.get(key)!r})" for key in changed[:4])
        raise CheckpointError(
            f"--resume {state['run_name']}: the config differs from the run's in {differences}"
            f"{' and more' if len(changed) > 4 else ''}; resume with the run's --config and --set options "
            f"(see its config.json); only {', '.join(RESUMABLE_CHANGES)} may change"
        )


def restore(state: dict[str, Any], run: Any) -> None:
    """Put a checkpoint's states back into a freshly built run (a training.run.Run)."""
    run.raw_model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state["scheduler"] is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    length = SCHEDULE_LENGTH.get(run.config["SCHEDULER"])
    if run.scheduler is not None and length is not None and length not in run.config["SCHEDULER_CONFIG"]:
        # Resumed with other EPOCHS: the schedule follows them, from where the longer (or shorter) one would be now.
        setattr(run.scheduler, length, run.config["EPOCHS"])
        closed_form = run.scheduler._get_closed_form_lr()  # pylint: disable=protected-access  # torch's own formula
        for group, lr in zip(run.optimizer.param_groups, closed_form, strict=True):
            group["lr"] = lr
        run.scheduler._last_lr = closed_form  # pylint: disable=protected-access  # what get_last_lr() reports
    run.scaler.load_state_dict(state["scaler"])
    run.best_value, run.best_epoch = state["best"]["value"], state["best"]["epoch"]
    for hook in run.hooks:
        if hasattr(hook, "load_state_dict") and type(hook).__name__ in state.get("extensions", {}):
            hook.load_state_dict(state["extensions"][type(hook).__name__])
    set_rng_state(state["rng"])


def resume_command(routine: str, run_name: str) -> str:
    """The command that continues ``run_name``: this process's train.py options, with --resume."""
    args = sys.argv[1:] if Path(sys.argv[0]).name == "train.py" else []
    options, skip = [], False
    for arg in args:  # drop the options that the command sets itself
        if skip or arg.startswith(("--resume=", "--routine=")):
            skip = False
            continue
        skip = arg in ("--resume", "--routine")
        if not skip:
            options.append(arg)
    return shlex.join(["python", "train.py", "--routine", routine, *options, "--resume", run_name])
