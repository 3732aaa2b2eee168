"""PyTorch-Ignite routine: a trainer Engine runs the loop, handlers on its events do the rest.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
Building, resuming, checkpoints and records are shared (training/run.py); this file wires them to Ignite's
trainer and evaluator engines, as Ignite's own examples/cifar10/main.py does: ``training(local_rank, ...)`` runs
under ``idist.Parallel``, in this process, in each process that torchrun starts, or in each of the ``nproc_per_node``
processes that Ignite spawns itself.
"""

import logging
import math
import multiprocessing
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events, create_supervised_evaluator
from ignite.handlers import FastaiLRFinder, ProgressBar
from ignite.metrics import Loss, Metric
from ignite.metrics.metric import reinit__is_reduced
from torch import nn

from config.device import get_device
from config.paths import GLOBAL_CONFIG, GlobalConfig
from config.schema import validate_config
from config.serialize import ConfigError, to_jsonable
from training.build import LOGGER, autocast
from training.distributed import backend_for, check_distributed_config, launched_world_size
from training.records import RunResult
from training.run import Run
from utils.metric_sums import MetricSums
from utils.tracking.csv_logs import flatten

ROUTINE = "ignite"
# Keys this routine cannot honour, with what to do instead.
REFUSED: dict[str, str] = {}
# LR_FIND's range test: its steps and the learning rates it sweeps (fastai's lr_find defaults).
LR_FIND_STEPS = 100
LR_FIND_RANGE = (1e-7, 10.0)

# Ignite's engines log their start, their end and any exception. The recorder already logs each epoch, and
# run.guard() records the exception that the CLI then prints on one line, so the engines log to a silent logger.
ENGINE_LOGGER = logging.getLogger(f"{__name__}.engine")
ENGINE_LOGGER.addHandler(logging.NullHandler())
ENGINE_LOGGER.propagate = False

Batch = tuple[torch.Tensor, torch.Tensor]


def make_train_step(run: Run, finite_or_raise: bool = True) -> Callable[[Engine, Batch], float]:
    """The step function of the trainer, as in Ignite's examples: the same step as the raw routine's.

    ``finite_or_raise`` False (the LR finder's range test): a loss that is not finite gives infinity, which ends
    the test, instead of an error.
    """
    model, optimizer, scaler, grad_clip = run.model, run.optimizer, run.scaler, run.config["GRAD_CLIP"]

    def train_step(engine: Engine, batch: Batch) -> float:
        model.train()
        images, masks = run.to_device(*batch)
        with autocast(run.device, run.dtype):  # the forward pass in MIXED_PRECISION's dtype, if any
            logits = model(images)
        loss = run.loss_fn(logits.float(), masks)  # the loss in full precision
        if not torch.isfinite(loss):
            if not finite_or_raise:
                return math.inf
            raise FloatingPointError(
                f"the training loss is {loss.item()} at epoch {engine.state.epoch}, step {run.step + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, so that GRAD_CLIP means the same in fp16
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return loss.item()

    return train_step


def create_trainer(run: Run) -> Engine:
    """The trainer: the step function on every batch; ``state.loss_sum / state.samples`` is the epoch's loss."""
    trainer = Engine(make_train_step(run))  # not DeterministicEngine: run.begin_epoch seeds the batch order itself
    trainer.logger = ENGINE_LOGGER

    @trainer.on(Events.EPOCH_STARTED)
    def begin_epoch(engine: Engine) -> None:
        run.begin_epoch(engine.state.epoch)
        # A new iterator, drawn after the seed. Ignite would otherwise take one more item from the last epoch's
        # iterator (to see it end), and the sampler draws from the just-seeded generator on that last call.
        engine.set_data(run.train_loader)
        engine.state.loss_sum, engine.state.samples = 0.0, 0

    @trainer.on(Events.ITERATION_COMPLETED)
    def end_step(engine: Engine) -> None:
        if run.scheduler_per_step:  # ONE_CYCLE steps every batch
            run.scheduler.step()
        run.end_step(engine.state.output)
        # Weighted by batch size, so that a short last batch counts for what it holds (Ignite's RunningAverage
        # would be a moving average over batches instead).
        samples = len(engine.state.batch[0])
        engine.state.loss_sum += engine.state.output * samples
        engine.state.samples += samples

    # A bar per batch on a terminal (rank 0's); in a log file, the line per epoch is enough.
    if run.rank == 0 and sys.stderr.isatty():
        ProgressBar(persist=False).attach(trainer, output_transform=lambda loss: {"loss": loss})
    return trainer


class SummedMetrics(Metric):
    """The run's METRICS as one Ignite metric: per (metric, class) sums and counts of defined values and pooled
    counts (utils/metric_sums.py), added up over the ranks in ``compute``, which gives every ``val_*`` column."""

    def __init__(self, sums: MetricSums, device: torch.device) -> None:
        self.sums = sums  # before Metric.__init__, which calls reset()
        super().__init__(device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self.sums.reset()

    @reinit__is_reduced
    def update(self, output: Batch) -> None:
        self.sums.update(*output)

    def compute(self) -> dict[str, float]:
        totals = torch.tensor(self.sums.totals(), dtype=torch.float64, device=self._device)  # nccl: on the GPU
        return self.sums.compute(idist.all_reduce(totals).tolist())


def create_evaluator(run: Run) -> Engine:
    """The evaluator: val_loss averaged over samples by Ignite's Loss metric, and the METRICS' columns by
    SummedMetrics (each adds up its sums and counts over the ranks itself); ``state.metrics["val"]`` holds them."""
    evaluator = create_supervised_evaluator(
        run.raw_model,
        # Loss weights each batch's mean by the batch size: the mean over samples. It sums on the run's device.
        metrics={"val_loss": Loss(run.loss_fn, device=run.device), "val": SummedMetrics(run.metrics, run.device)},
        device=run.device,
        non_blocking=True,
        model_fn=lambda _model, images: run.predict(images),  # autocast as in training, float32 logits
    )
    evaluator.logger = ENGINE_LOGGER
    return evaluator


def find_lr(run: Run) -> None:
    """LR_FIND: a learning-rate range test with Ignite's FastaiLRFinder, then train with its suggestion.

    The finder restores the model, optimizer and scaler after the test, and the test runs on a forked RNG, so the
    run then trains exactly as if OPTIMIZER_CONFIG had set the suggested lr (ONE_CYCLE: as its max_lr).
    """
    if run.start_epoch > 1:
        LOGGER.info("LR_FIND: skipped; a resumed run goes on with the lr of its checkpoint")
        return

    tester = Engine(make_train_step(run, finite_or_raise=False))
    tester.logger = ENGINE_LOGGER
    finder = FastaiLRFinder()
    to_save = {"model": run.raw_model, "optimizer": run.optimizer, "scaler": run.scaler}
    start_lr, end_lr = LR_FIND_RANGE
    LOGGER.info("LR_FIND: range test of %d steps, lr %g to %g", LR_FIND_STEPS, start_lr, end_lr)
    with (
        warnings.catch_warnings(record=True) as caught,
        torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []),
        finder.attach(tester, to_save, num_iter=LR_FIND_STEPS, start_lr=start_lr, end_lr=end_lr) as testing,
    ):
        testing.run(run.train_loader, max_epochs=math.ceil(LR_FIND_STEPS / len(run.train_loader)))
    for warning in caught:  # e.g. that the loss did not diverge: into the run's log rather than onto stderr
        LOGGER.warning("LR_FIND: %s", warning.message)
    try:
        lr = finder.lr_suggestion()  # a list with several parameter groups
    except RuntimeError as err:  # no descending part in the loss curve
        LOGGER.warning("LR_FIND: no suggestion (%s); training with lr %g", err, run.optimizer.param_groups[0]["lr"])
        return
    LOGGER.info("LR_FIND: the range test suggests lr %s; training with it", lr)
    run.set_lr(lr[0] if isinstance(lr, list) else lr)


def training(
    _local_rank: int,
    config: dict[str, Any],
    global_config: GlobalConfig,
    resume: str | Path | None,
    results: Any,
    hooks: list[Any] | None = None,
) -> None:
    """One process's training, run by ``idist.Parallel``; puts its RunResult (rank 0's) in ``results``."""
    # build and resume
    run = Run(config, global_config, ROUTINE, resume, REFUSED, hooks=hooks)
    trainer, evaluator = create_trainer(run), create_evaluator(run)
    epochs = run.config["EPOCHS"]
    if run.start_epoch <= epochs:  # Engine.run goes on after the epoch in its state: the last one done, or 0
        trainer.load_state_dict(
            {"epoch": run.start_epoch - 1, "max_epochs": epochs, "epoch_length": len(run.train_loader)}
        )

    # loop: the trainer's events call the handlers
    @trainer.on(Events.EPOCH_COMPLETED)
    def end_epoch(engine: Engine) -> None:
        # evaluate
        run.sync_buffers()
        metrics = evaluator.run(run.val_loader).metrics
        val = {"val_loss": metrics["val_loss"], **metrics["val"]}  # val_loss, then the METRICS' columns
        run.step_epoch_scheduler(val)
        # checkpoint and record
        train_loss = run.mean_over_ranks({"loss": engine.state.loss_sum}, engine.state.samples)["loss"]
        if run.end_epoch(engine.state.epoch, train_loss, val):
            engine.terminate()

    with run.guard():
        if run.config["LR_FIND"]:
            find_lr(run)
        if run.start_epoch <= epochs:  # else the resumed run is complete already
            trainer.run(run.train_loader)
    results.put(run.finish())


def train(
    config: dict[str, Any],
    global_config: GlobalConfig = GLOBAL_CONFIG,
    resume: str | Path | None = None,
    hooks: list[Any] | None = None,
    nproc_per_node: int | None = None,
) -> RunResult:
    """Train ``config`` with Ignite's engines; ``resume`` is ``latest``, a run name or a checkpoint path;
    ``hooks``: what a caller that starts runs itself (the hyperparameter search) adds to the run.

    ``nproc_per_node``: spawn that many processes (one per GPU, or CPU processes with gloo) and train in parallel.
    Under torchrun leave it None: the processes exist already. The config then travels to the new processes by
    pickle, so its classes and functions must be importable by name (not defined in a --config file).
    """
    # A queue rather than a return value: a spawned process's result must come back to this one.
    results = multiprocessing.get_context("spawn").SimpleQueue()
    if nproc_per_node is None and launched_world_size() <= 1:
        training(0, config, global_config, resume, results, hooks)  # one process: no process group to set up
        return results.get()
    if not all(getattr(hook, "multiprocess", False) for hook in hooks or []):  # a search's trial lives in one
        raise ConfigError("hooks (the hyperparameter search) run in one process: start the run without torchrun")
    # the config's errors here, on one line, rather than from inside each spawned process
    checked = validate_config(config, REFUSED)
    check_distributed_config(checked, nproc_per_node or launched_world_size())
    if nproc_per_node is not None:  # spawned processes unpickle the config: they import its classes by module name
        in_file = [key for key, value in flatten(to_jsonable(checked)).items() if ".py:" in str(value)]
        if in_file:
            raise ConfigError(
                f"{', '.join(in_file)}: defined in the --config file, which the processes of --nproc-per-node cannot "
                "import; move it into a module of the project (e.g. utils/losses.py), or start with torchrun"
            )
    with idist.Parallel(backend=backend_for(get_device(checked["DEVICE"])), nproc_per_node=nproc_per_node) as parallel:
        parallel.run(training, config, global_config, resume, results, hooks)
    return results.get()
