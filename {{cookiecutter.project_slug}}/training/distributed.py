"""Distributed data parallel: torchrun (or Ignite's spawn) starts one process per device; rank 0 writes the files.

The helpers here do nothing in a single process, so that the Run and the routines call them unconditionally.
"""

import gc
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from config.serialize import ConfigError

# The process group's store key under which the first rank to fail leaves its error for the others.
FAILURE_KEY = "project/first_failure"


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def launched_world_size() -> int:
    """The number of processes that torchrun started (WORLD_SIZE; 1 when the process was started by hand)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE, RANK, MASTER_ADDR, ...),
    unless a framework has joined it already; return this process's device (``cuda:LOCAL_RANK`` on GPUs).

    In a single process (no WORLD_SIZE above 1) nothing happens and ``device`` is returned as it is.
    """
    if not dist.is_initialized():
        if launched_world_size() <= 1:
            return device
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"distributed training runs on CUDA (nccl) or on the CPU (gloo), not on {device}")
        dist.init_process_group(backend_for(device))
    if device.type == "cuda":  # one GPU a process, whatever index DEVICE names
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def check_distributed_config(config: dict[str, Any], world_size: int) -> None:
    """Refuse what a run of several processes cannot do."""
    if world_size > 1 and config["LR_FIND"]:
        raise ConfigError(
            "LR_FIND runs in a single process: find the lr with python train.py, then set OPTIMIZER_CONFIG.lr "
            "(or ONE_CYCLE's max_lr) for the distributed run"
        )


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside distributed training)."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a single process); every rank must call it."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def on_rank_zero(action: Callable[[], Any], errors: tuple[type[Exception], ...]) -> Any:
    """``action()`` on rank 0 alone (None on the others; every rank must call it). An error of ``errors`` that it
    raises is raised on every rank, with its type and message: the other ranks would otherwise wait for rank 0 in
    the next collective, and gloo would end them with "Connection closed by peer" instead of the real reason."""
    value, error = None, None
    if rank_and_world_size()[0] == 0:
        try:
            value = action()
        except errors as err:
            if not dist.is_initialized():
                raise
            error = err
    failure = broadcast_object(None if error is None else (type(error), str(error)))
    if error is not None:
        raise error
    if failure is not None:
        raise failure[0](failure[1])
    return value


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (``values`` in a single process); every rank must call it."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)  # on the GPU for nccl
    dist.all_reduce(tensor)
    return tensor.tolist()


def close_distributed(wait: bool = False) -> None:
    """Leave the process group, if this process joined one (torch warns at exit otherwise).

    ``wait``: after a run that ended well, wait for every rank first, so that no rank tears the group down while
    another still finishes its last exchange (gloo can then abort the slower process at exit).
    """
    if dist.is_initialized():
        gc.collect()  # DDP's reducer and its pending gloo work freed now, while the group still exists
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) into ``module`` on every rank; every rank must call it."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def failure_cause(error: BaseException) -> BaseException:
    """The error that ends this rank's run: ``error``, or the error of another rank that failed first.

    A rank that fails leaves its error's type and message in the process group's store before it exits; a rank
    that the failure ends (gloo's "Connection closed by peer", or torchrun's SIGTERM: KeyboardInterrupt) finds it
    there, so that the run is recorded failed with the real cause and every rank prints the same line. In a
    single process, or when the store cannot be reached, ``error`` itself.
    """
    if not dist.is_initialized():
        return error
    try:
        store = dist.distributed_c10d._get_default_store()  # pylint: disable=protected-access  # the group's own
        own = "" if isinstance(error, KeyboardInterrupt) else json.dumps(
            [type(error).__module__, type(error).__qualname__, " ".join(str(error).split())]
        )  # fmt: skip
        # Written only where no rank wrote first (compare_set with ""); read back whichever rank's it is.
        first = store.compare_set(FAILURE_KEY, "", own).decode() if own else _read(store)
    except (RuntimeError, ValueError):  # a store that has gone with rank 0 (Ignite's spawn): nothing to learn
        return error
    if not first or first == own:
        return error
    module, name, message = json.loads(first)
    try:
        kind = getattr(importlib.import_module(module), name)
        return kind(message)
    except (ImportError, AttributeError, TypeError):  # a class that cannot be rebuilt from its message alone
        return RuntimeError(f"{name} on another process: {message}")


def _read(store: Any) -> str:
    """FAILURE_KEY's value in ``store`` ("" when no rank has failed), without waiting."""
    return store.get(FAILURE_KEY).decode() if store.check([FAILURE_KEY]) else ""
