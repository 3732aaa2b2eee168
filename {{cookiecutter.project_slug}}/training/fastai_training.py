"""fastai routine: a Learner over the run's own model, optimizer and DataLoaders; behaviour added by callbacks.

Sections, in the same order in every routine: build -> resume -> loop -> evaluate -> checkpoint -> record.
Building, resuming, checkpoints and records are shared (training/run.py). fastai runs the loop (``fit``, or
``fit_one_cycle`` for ONE_CYCLE); the callbacks below hook the config's behaviour and the Run into its events:
RunEventsCallback seeds each epoch and hands each epoch's losses and metrics to the Run; fastai's MixedPrecision
(on CUDA; training/fastai_precision.py's AutocastCallback elsewhere) does MIXED_PRECISION, and fastai's GradientClip
does GRAD_CLIP.

Under ``torchrun --nproc_per_node=N train.py`` the fit runs in fastai's own ``Learner.distrib_ctx`` (see
:func:`distributed`): fastai wraps the model in DDP (through the ``accelerate`` package) and deals out the training
set with its DistributedDL, rank 0 drawing each epoch's order. Three things are set around it so that the run means
what it means in the other routines: the epoch's order is seeded with (SEED, epoch) (RunEventsCallback.before_epoch:
a resumed run sees the same batches), validation runs on the Run's own shards, which repeat no sample (DistributedDL
pads them), and BatchNorm stays BatchNorm (``sync_bn=False``: SyncBatchNorm runs on CUDA only).
"""

import random
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from fastai.callback.core import Callback, CancelFitException  # pylint: disable=no-name-in-module

# fastai creates its Cancel* exceptions at import time, where pylint cannot see them
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler  # importing it adds fit_one_cycle and lr_find to Learner
from fastai.callback.training import GradientClip
from fastai.data.core import DataLoaders
from fastai.learner import AvgLoss, Learner, Metric, SkipToEpoch
from fastai.optimizer import OptimWrapper
from fastai.torch_core import to_detach
from torch.utils.data import DataLoader

from config.paths import GLOBAL_CONFIG, GlobalConfig
from training.build import LOGGER, current_lr
from training.data import epoch_seed
from training.fastai_precision import AutocastCallback, ChannelsLastCallback, RunScalerCallback, closing_autocast
from training.records import RunResult
from training.run import Run
from utils.metric_sums import MetricSums

ROUTINE = "fastai"
# Keys this routine cannot honour, with what to do instead: none.
REFUSED: dict[str, str] = {}
# ONE_CYCLE as torch's OneCycleLR runs it in the raw routine: from max_lr / 25 up to max_lr, then down to
# max_lr / 25 / 1e4 (fastai's own ends at max_lr / 1e5); pct_start 0.3 (torch's) unless the config says otherwise.
ONE_CYCLE_DIV, ONE_CYCLE_DIV_FINAL, ONE_CYCLE_PCT_START = 25.0, 25.0 * 1e4, 0.3


class RunDataLoaders(DataLoaders):
    """fastai's DataLoaders over the run's plain torch DataLoaders, on the run's device.

    fastai puts the model and every batch on ``dls.device`` (else on the first GPU it finds, whatever DEVICE says);
    its setter calls ``.to()`` on each loader, which a torch DataLoader lacks, so the device is set here.
    """

    def __init__(self, run: Run) -> None:
        train_loader = run.train_loader
        if run.world_size > 1:  # the whole training set, shuffled: distrib_ctx's DistributedDL shards it itself
            train_loader = DataLoader(
                train_loader.dataset,
                batch_size=train_loader.batch_size,
                shuffle=True,  # what DistributedDL reads from a RandomSampler
                num_workers=train_loader.num_workers,
                pin_memory=train_loader.pin_memory,
                drop_last=train_loader.drop_last,
                persistent_workers=train_loader.persistent_workers,
            )
        super().__init__(train_loader, run.val_loader)
        self._device = run.device


class SummedMetrics(Metric):
    """The run's METRICS as one fastai metric: per (metric, class) sums and counts of defined values and pooled
    counts of this rank's samples (utils/metric_sums.py); RunEventsCallback.after_epoch adds them up over the ranks."""

    def __init__(self, sums: MetricSums) -> None:
        self.sums = sums

    def reset(self) -> None:
        self.sums.reset()

    def accumulate(self, learn: Learner) -> None:
        self.sums.update(learn.pred.float(), *learn.yb)

    @property
    def value(self) -> dict[str, float]:
        return self.sums.compute()  # this rank's columns, for fastai's Recorder

    @property
    def name(self) -> str:
        return "val"


class RunLearner(Learner):
    """fastai's Learner, with losses kept on their own rank.

    fastai gathers every batch's values from all processes (whenever WORLD_SIZE is set), which averages batches of
    uneven size wrongly and waits forever when the ranks' validation shards have different numbers of batches; the
    Run adds up sums and counts over the ranks once an epoch instead (RunEventsCallback.after_epoch).
    """

    def to_detach(self, b: Any, cpu: bool = True, gather: bool = True) -> Any:
        return to_detach(b, cpu, gather=False)


class RunEventsCallback(Callback):
    """Hooks the Run into fastai's events: each epoch seeded and clocked, each step counted and logged, each
    epoch's train loss and validation averages recorded and checkpointed by ``run.end_epoch``, which may stop
    the fit early.
    """

    order = SkipToEpoch.order + 1  # after fastai has skipped the epochs that a resumed run has done
    run_valid = False  # the batch events below are for training batches only

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.training_run, self.first_epoch, self.train_loss = run, run.start_epoch, AvgLoss()

    def before_epoch(self) -> None:
        """Seed the epoch's batch order and start its clock (fastai counts epochs from 0, the Run from 1)."""
        for callback in self.learn.cbs:
            if isinstance(callback, ParamScheduler):  # fit_one_cycle: the epoch's first lr now, to be recorded
                for name, schedule in callback.scheds.items():
                    self.opt.set_hyper(name, schedule(self.epoch / self.n_epoch))
        self.training_run.begin_epoch(self.epoch + 1)
        loader = getattr(self.dls.train, "dl", None)  # under distrib_ctx: the DataLoader inside DistributedDL
        if loader is not None:  # whose order rank 0 draws with this generator (and sends to the other ranks)
            loader.rng = random.Random(epoch_seed(self.training_run.config["SEED"], self.epoch + 1))

    def before_train(self) -> None:
        """Start the epoch's train loss."""
        self.train_loss.reset()

    def before_validate(self) -> None:
        """Validate rank 0's model on every rank, each on its own shard of the validation set.

        Under distrib_ctx, the Run's shard replaces DistributedDL's, which pads the last shard with samples of the
        first (one sample would count twice in the means).
        """
        self.training_run.sync_buffers()
        self.learn.dl = self.training_run.val_loader

    def after_loss(self) -> None:
        """Stop on a NaN or infinite loss before it reaches the weights, as the raw routine does."""
        if not torch.isfinite(self.learn.loss):
            step = self.training_run.step + 1
            raise FloatingPointError(
                f"the training loss is {self.learn.loss.item()} at epoch {self.epoch + 1}, step {step}"
            )

    def after_batch(self) -> None:
        """Add the batch to the train loss (the mean over samples, like fastai's valid_loss); count the step."""
        self.train_loss.accumulate(self.learn)
        self.training_run.end_step(self.learn.loss.item())

    def after_epoch(self) -> None:
        """Record the epoch and write its checkpoints; stop the fit when early stopping says so."""
        epoch = self.epoch + 1
        if epoch < self.first_epoch:  # skipped by SkipToEpoch, which raises in before_epoch
            return
        # evaluate: fastai has validated; AvgLoss and SummedMetrics summed the loss and METRICS over this rank's samples
        val = self.training_run.mean_over_ranks({"val_loss": float(self.recorder.loss.total)}, self.recorder.loss.count)
        val.update(self.training_run.metric_values())  # SummedMetrics' sums (run.metrics), over the ranks
        train_loss = self.training_run.mean_over_ranks({"loss": float(self.train_loss.total)}, self.train_loss.count)
        self.training_run.step_epoch_scheduler(val)
        # checkpoint and record
        for group in self.training_run.optimizer.param_groups:  # fastai's schedules write numpy floats, which
            group["lr"] = float(group["lr"])  # torch.load(weights_only=True) refuses: checkpoint plain ones
        if self.training_run.end_epoch(epoch, train_loss["loss"], val):
            raise CancelFitException


def build_learner(run: Run) -> Learner:
    """A Learner over the run's model, loss, metrics, optimizer and loaders, with the callbacks the config asks for."""
    callbacks: list[Callback] = [ChannelsLastCallback(run)] if run.config["CHANNELS_LAST"] else []
    if run.dtype is not None and run.device.type == "cuda":
        amp_mode = "bf16" if run.dtype == torch.bfloat16 else "fp16"
        callbacks += [MixedPrecision(amp_mode=amp_mode), RunScalerCallback(run)]
    elif run.dtype is not None:
        callbacks.append(AutocastCallback(run))
    if run.config["GRAD_CLIP"]:
        callbacks.append(GradientClip(max_norm=run.config["GRAD_CLIP"]))  # clip_grad_norm_, as in the raw routine
    learn = RunLearner(
        RunDataLoaders(run),
        run.raw_model,  # distrib_ctx wraps it in DDP under torchrun
        loss_func=run.loss_fn,
        lr=current_lr(run.optimizer),
        cbs=callbacks,
        metrics=[SummedMetrics(run.metrics)],
    )
    # fastai steps the run's own optimizer, so its state is the one that checkpoints save and a resume restores.
    # (Given as opt_func instead, fastai would clear that state when it first fits.)
    learn.opt = OptimWrapper(opt=run.optimizer)
    if run.rank != 0 or not sys.stdout.isatty():  # fastprogress draws its bars on stdout even when it is a file
        learn.remove_cb(ProgressCallback)
    return learn


def _broadcast_from_cpu(self: Any, values: list[int], rank: int) -> list[int]:  # pylint: disable=unused-argument
    """DistributedDL._broadcast for gloo: the same broadcast, of a CPU tensor."""
    tensor = torch.tensor(values, dtype=torch.long)
    dist.broadcast(tensor, rank)
    return tensor.tolist()


def distributed(learn: Learner, run: Run) -> AbstractContextManager:
    """fastai's ``distrib_ctx`` under torchrun; nothing in a single process (which then needs no ``accelerate``).

    fastai 2.8.12's DistributedDL sends the epoch's sample order from rank 0 with ``.cuda()`` (nccl's need), which
    fails on the CPU: with gloo its ``_broadcast`` is replaced by the same broadcast of a CPU tensor. ``accelerate``
    wraps the model in DDP on the CPU only when told ``cpu=True``.
    """
    if run.world_size == 1:
        return nullcontext()
    # Imported here: fastai.distributed imports accelerate, which only distributed runs need.
    from fastai.distributed import DistributedDL  # pylint: disable=import-outside-toplevel

    if dist.get_backend() == "gloo":
        DistributedDL._broadcast = _broadcast_from_cpu  # pylint: disable=protected-access
    return learn.distrib_ctx(sync_bn=False, cpu=run.device.type == "cpu")


def find_lr(learn: Learner, run: Run) -> None:
    """LR_FIND: fastai's learning-rate range test, then train with its suggestion (the "valley").

    The suggestion replaces the optimizer's lr, the base of an epoch SCHEDULER, or ONE_CYCLE's max_lr. lr_find
    restores the model and the optimizer; the RNG is restored too, so training then draws what it would have.
    """
    cuda = [run.device] if run.device.type == "cuda" else []
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=cuda):
        learn.path = Path(scratch)  # lr_find saves the model there (by default in ./models: a package here)
        lr = float(learn.lr_find(show_plot=False).valley)
    run.set_lr(lr)
    LOGGER.info("lr_find: training with lr %.3g (fastai's valley suggestion)", lr)


def fit(learn: Learner, run: Run) -> None:
    """fastai's fit, or fit_one_cycle for ONE_CYCLE, from the first epoch still to train."""
    config, callbacks = run.config, [RunEventsCallback(run)]
    start = run.start_epoch - 1  # fastai counts epochs from 0
    if config["ONE_CYCLE"] is None:
        # The optimizer's own lr: an epoch SCHEDULER (stepped after each epoch) and a resumed run keep theirs.
        learn.fit(config["EPOCHS"], lr=current_lr(run.optimizer), cbs=callbacks, start_epoch=start)
        return
    # The peak is kept in the param groups (as torch's OneCycleLR does), so that a resumed run goes on with it.
    max_lr = [group.setdefault("max_lr", config["ONE_CYCLE"]["max_lr"]) for group in run.optimizer.param_groups]
    learn.fit_one_cycle(
        config["EPOCHS"],
        lr_max=max_lr,  # one per param group
        div=ONE_CYCLE_DIV,
        div_final=ONE_CYCLE_DIV_FINAL,
        pct_start=config["ONE_CYCLE"].get("pct_start", ONE_CYCLE_PCT_START),
        cbs=callbacks,
        start_epoch=start,
    )


def train(
    config: dict[str, Any],
    global_config: GlobalConfig = GLOBAL_CONFIG,
    resume: str | Path | None = None,
    hooks: list[Any] | None = None,
) -> RunResult:
    """Train ``config`` with a fastai Learner; ``resume`` is ``latest``, a run name or a checkpoint path;
    ``hooks``: what a caller that starts runs itself (the hyperparameter search) adds to the run."""
    # build and resume
    run = Run(config, global_config, ROUTINE, resume, REFUSED, framework_schedule=True, framework_ddp=True, hooks=hooks)
    with run.guard():
        learn = build_learner(run)
        # loop (evaluate, checkpoint and record: RunEventsCallback.after_epoch)
        # no fastai table (run.end_epoch logs each epoch); under torchrun, fastai's distributed training
        with learn.no_logging(), closing_autocast(learn), distributed(learn, run):
            if run.start_epoch <= run.config["EPOCHS"]:
                if run.config["LR_FIND"] and run.start_epoch == 1:
                    find_lr(learn, run)
                fit(learn, run)
    return run.finish()
