"""fastai callbacks for the GPU-path keys: MIXED_PRECISION and CHANNELS_LAST, as the other routines run them.

On CUDA, fastai's own MixedPrecision autocasts, with the run's GradScaler put in (RunScalerCallback) so that
checkpoints hold its state; elsewhere (bf16 on the CPU, where MixedPrecision does not autocast) AutocastCallback.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from fastai.callback.core import Callback, CancelStepException  # pylint: disable=no-name-in-module
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.training import GradientClip
from fastai.learner import Learner

from training.build import autocast
from training.run import Run


class ChannelsLastCallback(Callback):
    """CHANNELS_LAST: image batches in the model's memory format (fastai has moved them to the run's device)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.memory_format = run.memory_format

    def before_batch(self) -> None:
        """Give the batch's images the model's memory format."""
        self.learn.xb = tuple(x.contiguous(memory_format=self.memory_format) for x in self.xb)


class RunScalerCallback(Callback):
    """On CUDA: fastai's MixedPrecision scales the loss with the run's GradScaler (its state is checkpointed)."""

    order = MixedPrecision.order + 1  # after MixedPrecision.before_fit has made a scaler of its own

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.scaler = run.scaler

    def before_fit(self) -> None:
        """Put the run's scaler in place of MixedPrecision's."""
        self.learn.scaler = self.scaler


class AutocastCallback(Callback):
    """MIXED_PRECISION off CUDA (bf16 on the CPU): the forward pass under autocast in the run's dtype.

    fastai 2.8.12's MixedPrecision (used on CUDA) autocasts on CUDA only, hence this small version of it.
    It borrows MixedPrecision's trick: the callback poses as the optimizer for ``scaler.step``, which unscales the
    gradients (for GradientClip, next in order) and calls :meth:`step` only if they are finite.
    """

    order = GradientClip.order - 1

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.device, self.dtype, self.scaler = run.device, run.dtype, run.scaler
        self.context: torch.autocast | None = None
        self.skipped = False

    def before_batch(self) -> None:
        """Enter autocast for the forward pass."""
        self.context = autocast(self.device, self.dtype)
        self.context.__enter__()  # pylint: disable=unnecessary-dunder-call  # left in after_pred

    def after_pred(self) -> None:
        """Leave autocast: the loss and the metrics in full precision, as the raw routine evaluates them."""
        self.close()
        self.learn.pred = self.pred.float()

    def before_backward(self) -> None:
        """Scale the loss (fp16; the identity for bf16)."""
        self.learn.loss_grad = self.scaler.scale(self.loss_grad)

    def before_step(self) -> None:
        """Unscale the gradients; skip the step if they overflowed (the scaler then lowers its scale)."""
        self.skipped = True
        self.scaler.step(self)
        if self.skipped:
            raise CancelStepException

    def after_step(self) -> None:
        """Update the scale, also after a skipped step."""
        self.scaler.update()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, for ``scaler.step(self)``."""
        return self.opt.param_groups

    def step(self) -> None:
        """Called by ``scaler.step(self)`` when the gradients are finite; fastai then steps the optimizer."""
        self.skipped = False

    def close(self) -> None:
        """Leave the autocast context (idempotent: also called when an error interrupts a forward pass)."""
        if self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None


@contextmanager
def closing_autocast(learn: Learner) -> Iterator[None]:
    """Leave AutocastCallback's context when an error interrupts a forward pass. fastai has no event for errors, and
    an autocast left on would change what every later computation in the process does (a hyperparameter search).
    """
    try:
        yield
    finally:
        for callback in learn.cbs:
            if isinstance(callback, AutocastCallback):
                callback.close()
