"""Run: the built parts of one training run, and what every routine does the same way around its own loop.

A routine makes a Run (build, resume, sanity checks), loops in its own way inside ``with run.guard():``, calls
:meth:`Run.end_step` after each optimizer step and :meth:`Run.end_epoch` after each validation (record, checkpoint,
early stopping), and returns :meth:`Run.finish`. ``run.model`` is what training steps call (DDP-wrapped when several
processes train); ``run.raw_model`` is the bare module that is validated, checkpointed and predicted with.
"""

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

import extensions
from config.device import get_device
from config.paths import GlobalConfig
from config.schema import validate_config
from config.serialize import ConfigError, to_jsonable
from training import build, checkpoint, data, distributed
from training.records import LOGGER, RunRecorder, RunResult
from training.sanity_checks import check_validation_classes, sanity_checks
from training.signals import StopSignals
from utils.metric_sums import improves


class StopRun(Exception):  # noqa: N818  # a stop that a hook asks for, not an error
    """Raised by a hook after an epoch to end the run there; the run is recorded with ``status`` (e.g. a search's
    ``pruned``)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Run:  # pylint: disable=too-many-public-methods
    """Everything a training loop needs, built from the config the same way for every routine.

    Args:
        routine: the routine's name, recorded with the run; ``resume``: ``latest``, a run name or a checkpoint path.
        refused: config keys the routine cannot honour, with the reason; setting one is a ConfigError.
        framework_schedule: the framework runs ONE_CYCLE itself (fastai's fit_one_cycle): build no OneCycleLR.
        framework_ddp: the framework wraps the model in DDP itself (fastai): ``model`` stays ``raw_model``.
        hooks: what a caller that starts runs itself adds (a search), besides the extensions' hooks.
    """

    best_value: float | None  # the best CHECKPOINT_METRIC so far, and its epoch (None: no epoch was best yet)
    best_epoch: int | None

    def __init__(
        self,
        config: dict[str, Any],
        global_config: GlobalConfig,
        routine: str,
        resume: str | Path | None = None,
        refused: Mapping[str, str] | None = None,
        framework_schedule: bool = False,
        framework_ddp: bool = False,
        hooks: list[Any] | None = None,
    ) -> None:
        # build
        self.config = config = validate_config(config, refused)
        jsonable_config = to_jsonable(config)  # refuses what config.json could not rebuild (a lambda), up front
        checkpoint.set_seed(config["SEED"])  # the same on every rank: DDP starts from rank 0's weights anyway
        self.device = distributed.init_distributed(get_device(config["DEVICE"]))
        self.rank, self.world_size = distributed.rank_and_world_size()
        distributed.check_distributed_config(config, self.world_size)
        self.dtype = build.autocast_dtype(config, self.device)
        self.memory_format = build.memory_format(config)
        # resume, or start from another run's weights (INIT_FROM)
        state, source = checkpoint.read_sources(config, resume, global_config, routine, jsonable_config)
        self.raw_model = build.build_model(config, self.device)
        if state is None and source is not None:
            checkpoint.init_weights(self.raw_model, source, config["INIT_FROM"])
        stats_source = state or (source if config["NORMALIZATION"] == "init" else None)
        *datasets, self.normalization = data.build_datasets(config, stats_source)
        divisor = int(getattr(self.raw_model, "divisor", 1))  # batches padded to sizes the model takes
        self.train_loader, self.val_loader = data.build_loaders(
            config, datasets, self.device, divisor, self.rank, self.world_size
        )
        self.optimizer = build.build_optimizer(config, self.raw_model)
        self.scheduler = None
        if not (framework_schedule and config["ONE_CYCLE"] is not None):
            self.scheduler = build.build_scheduler(config, self.optimizer, len(self.train_loader))
        self.scaler = build.grad_scaler(self.device, self.dtype)
        self.loss_fn = build.build_loss(config)
        self.metrics = build.build_metrics(config)
        with torch.random.fork_rng():  # the batches taken for checks and images must not shift training's RNG
            self.sample_batch = self.to_device(*next(iter(self.train_loader)))
            self.val_images, self.val_masks = self.to_device(*(t[:4] for t in next(iter(self.val_loader))))
        sanity_checks(config, self.raw_model, *self.sample_batch, self.loss_fn, self.metrics, self.device)
        check_validation_classes(config, self.val_loader, self.device)  # a checkpoint metric that is never defined
        self.best_value = self.best_epoch = None
        self.hooks = [*extensions.make_hooks(config), *(hooks or [])] if self.rank == 0 else []
        if state is not None:
            checkpoint.restore(state, self)
        # Training steps go through DDP, which averages the gradients over the ranks.
        self.model: torch.nn.Module = self.raw_model
        if self.world_size > 1 and not framework_ddp:
            self.model = DistributedDataParallel(
                self.raw_model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        self.signals = StopSignals()

        # Rank 0 alone writes the run's files; the other ranks have no recorder (and stop with rank 0's error).
        def start_records() -> RunRecorder:
            global_config.check_writable()  # before the run's folders and row exist
            columns = {key: value for hook in self.hooks for key, value in getattr(hook, "columns", {}).items()}
            run_name, epochs_done = (state["run_name"], state["epoch"]) if state else (None, 0)
            args = (jsonable_config, global_config, routine, self.device, self.world_size, run_name, epochs_done)
            return RunRecorder(*args, columns, model=self.raw_model)

        self.recorder: RunRecorder | None = distributed.on_rank_zero(start_records, (ConfigError, OSError))
        self.routine, self.jsonable_config = routine, jsonable_config
        self.start_epoch: int = (state["epoch"] if state else 0) + 1
        self.step = (self.start_epoch - 1) * len(self.train_loader)
        self._epoch_started, self._epoch_lr = 0.0, 0.0
        with self.guard():  # the run's row exists now: a failure from here on is recorded too
            if state is None:
                self.call_hooks("on_start")
            build.compile_model(config, self.raw_model)  # last: the checks above ran the plain model, in eager mode

    @property
    def scheduler_per_step(self) -> bool:
        """Whether the scheduler steps every batch (one-cycle) rather than every epoch."""
        return isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)

    def call_hooks(self, event: str, *args: Any) -> None:
        """Call ``event`` on every hook that has it (rank 0 only)."""
        for hook in self.hooks:
            if hasattr(hook, event):
                getattr(hook, event)(self, *args)

    def epochs(self) -> Iterator[int]:
        """The epochs still to train, each begun with :meth:`begin_epoch`."""
        for epoch in range(self.start_epoch, self.config["EPOCHS"] + 1):
            self.begin_epoch(epoch)
            yield epoch

    def begin_epoch(self, epoch: int) -> None:
        """Seed the epoch's batch order with (SEED, epoch) and start its clock."""
        data.set_epoch(self.train_loader, self.config["SEED"], epoch)
        self._epoch_started, self._epoch_lr = time.perf_counter(), build.current_lr(self.optimizer)

    def to_device(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the run's device, images in the model's memory format (non-blocking from pinned memory)."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return images, masks.to(self.device, non_blocking=True)

    def end_step(self, loss: float) -> None:
        """After an optimizer step: count it and tell the hooks (held: a signal inside a writer's hand-over can
        leave its thread waiting at close)."""
        self.step += 1
        if self.hooks:  # the common case on every step (other ranks, no extension) costs a counter only
            with self.signals.held():
                self.call_hooks("on_step", loss)

    def step_epoch_scheduler(self, val: dict[str, float]) -> None:
        """The per-epoch scheduler step (one that reads a metric gets CHECKPOINT_METRIC's); nothing for one-cycle."""
        if not self.scheduler_per_step:
            build.step_epoch_scheduler(self.scheduler, val, self.config["CHECKPOINT_METRIC"])

    def mean_over_ranks(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Sums over this rank's samples and their count -> means over the samples of all ranks (exact with uneven
        shards and short last batches, unlike a mean of the ranks' means)."""
        *totals, count = distributed.sum_over_ranks([*sums.values(), count], self.device)
        return {key: value / count for key, value in zip(sums, totals, strict=True)}

    def metric_values(self) -> dict[str, float]:
        """The epoch's validation metrics: ``run.metrics``' sums and counts added up over the ranks, then the means."""
        return self.metrics.compute(distributed.sum_over_ranks(self.metrics.totals(), self.device))

    def sync_buffers(self) -> None:
        """Before validation: every rank takes rank 0's buffers (BatchNorm statistics), so that all validate the
        model that rank 0's checkpoint holds."""
        distributed.broadcast_buffers(self.raw_model)

    def is_better(self, value: float) -> bool:
        """Whether ``value`` of CHECKPOINT_METRIC beats the best so far by more than EARLY_STOPPING's min_delta; an
        undefined value (NaN) never does: that epoch is not best, and early stopping counts it as no improvement."""
        delta = (self.config["EARLY_STOPPING"] or {}).get("min_delta", 0.0)
        return improves(value, self.best_value, self.config["CHECKPOINT_MODE"], delta)

    def end_epoch(self, epoch: int, train_loss: float, val: dict[str, float]) -> bool:
        """After validation: record the epoch, write last.pt (and best.pt), tell the hooks; True: stop early.

        Every rank calls it with the same (reduced) values; rank 0's early-stopping decision goes to all ranks.
        """
        seconds = round(time.perf_counter() - self._epoch_started, 3)
        for key, value in {"train_loss": train_loss, **val}.items():  # a NaN metric is undefined (utils/metrics.py)
            if not math.isfinite(value) and (key.endswith("loss") or not math.isnan(value)):  # NaN loss: failed
                raise FloatingPointError(f"{key} is {value} at epoch {epoch}")
        row = {"epoch": epoch, "train_loss": train_loss, **val, "lr": self._epoch_lr, "seconds": seconds}
        best = self.is_better(val[self.config["CHECKPOINT_METRIC"]])
        if best:
            self.best_value, self.best_epoch = val[self.config["CHECKPOINT_METRIC"]], epoch
        patience = (self.config["EARLY_STOPPING"] or {}).get("patience")
        stop = patience is not None and epoch - (self.best_epoch or 0) >= patience  # no best yet: since the start
        if self.recorder is not None:
            with self.signals.held():  # an epoch's row and its checkpoint are written as a unit
                self.recorder.record_epoch(row, best)
                state = checkpoint.make_checkpoint(self, epoch)
                checkpoint.save_checkpoint(state, self.recorder.weight_dir / "last.pt")
                if best:
                    checkpoint.save_checkpoint(state, self.recorder.weight_dir / "best.pt")
                self.call_hooks("on_epoch_end", row)  # may raise StopRun: the epoch is on disk already
            if stop:
                LOGGER.info("early stopping: no better %s for %d epochs", self.config["CHECKPOINT_METRIC"], patience)
        return distributed.broadcast_object(stop)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits of the bare model in eval mode, under the run's autocast (the mode is restored)."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        with build.autocast(self.device, self.dtype):
            logits = self.raw_model(images.to(memory_format=self.memory_format))
        self.raw_model.train(was_training)
        return logits.float()

    def set_lr(self, lr: float) -> None:
        """Train with ``lr`` (LR_FIND's suggestion): the optimizer's and an epoch scheduler's start, or ONE_CYCLE's
        peak (``max_lr``, which a framework's own one-cycle reads from the parameter groups)."""
        key = "max_lr" if self.config["ONE_CYCLE"] is not None else "lr"
        for group in self.optimizer.param_groups:
            group[key] = float(lr)
            if key == "lr" and "initial_lr" in group:  # where an epoch scheduler's schedule starts
                group["initial_lr"] = float(lr)
        if key == "max_lr":
            self.config["ONE_CYCLE"] = {**self.config["ONE_CYCLE"], "max_lr": float(lr)}
            if self.scheduler is not None:
                self.scheduler = build.build_scheduler(self.config, self.optimizer, len(self.train_loader))
        elif self.scheduler is not None:
            self.scheduler.base_lrs = [float(lr)] * len(self.optimizer.param_groups)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Stop cleanly on Ctrl-C or SIGTERM; record an interrupted, stopped or failed run before the error goes on."""
        try:
            with self.signals.installed():
                yield
        except (KeyboardInterrupt, Exception) as error:  # under torchrun, maybe the symptom of another rank's error
            cause = error if isinstance(error, StopRun) else distributed.failure_cause(error)
            status = cause.status if isinstance(cause, StopRun) else "failed"
            with self.signals.ignored():  # torchrun's SIGTERM (as a rank failed) cannot cut the record short
                self.finish("interrupted" if isinstance(cause, KeyboardInterrupt) else status, cause)
            if cause is not error:
                raise cause from error
            raise

    def finish(self, status: str = "completed", error: BaseException | None = None) -> RunResult:
        """Record how the run ended, tell the hooks, and return its result (rank 0's, on every rank)."""
        result = None
        if self.recorder is not None:
            result = self.recorder.result(status, self.best_epoch, error)
            self.recorder.finish(result)
            if status == "interrupted" and result.epochs_completed == 0:
                LOGGER.warning("run %s interrupted before its first epoch ended: nothing to continue", result.run_name)
            elif status == "interrupted":
                # A hook may name what --resume continues (a cross-validation, of which this run is a fold).
                name = next((hook.resume_name for hook in self.hooks if hasattr(hook, "resume_name")), result.run_name)
                command = checkpoint.resume_command(self.routine, name)
                LOGGER.warning(
                    "run %s interrupted after %d epoch(s); continue it with: %s",
                    result.run_name,
                    result.epochs_completed,
                    command,
                )
            for hook in self.hooks:  # after the records, so that a message sees the finished files
                if hasattr(hook, "on_finish"):
                    hook.on_finish(self, result)
        if error is not None:
            return result  # type: ignore[return-value]  # the caller re-raises; no collective after an error
        return distributed.broadcast_object(result)
