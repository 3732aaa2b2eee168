"""TensorBoard logging of a run (use_tensorboard): the TENSORBOARD key and the hook that writes the events.

The events land in ``logs/<run>/tensorboard``; tags are listed in utils/tracking/tensorboard.py.
"""

from typing import Any

import torch

from config.checks import of_type
from config.schema import Key
from utils.tracking.tensorboard import TensorBoardLogger

CONFIG_KEYS = {
    "TENSORBOARD": Key(
        "write TensorBoard events under logs/<run>/tensorboard", of_type(bool, name="True or False"), False
    ),
}


class TensorBoardHook:
    """Writes the first training batch, the model's graph, each step's loss and each epoch's values and predictions."""

    def __init__(self) -> None:
        self.logger: TensorBoardLogger | None = None

    def _open(self, run: Any) -> TensorBoardLogger:
        if self.logger is None:  # also on resume, where on_start is not called
            self.logger = TensorBoardLogger(run.recorder.run_dir / "tensorboard", task=run.config["TASK"])
        return self.logger

    def on_start(self, run: Any) -> None:
        """The first training batch as the model sees it, and the model's graph."""
        logger = self._open(run)
        with torch.random.fork_rng():
            logger.log_inputs(*run.sample_batch)
            logger.log_graph(run.raw_model, run.sample_batch[0][:1])

    def on_step(self, run: Any, loss: float) -> None:
        """The training loss of one optimizer step."""
        self._open(run).log_step(run.step, loss)

    def on_epoch_end(self, run: Any, row: dict[str, float]) -> None:
        """The epoch's history row and a few validation predictions."""
        logger = self._open(run)
        logger.log_epoch(row)
        logger.log_predictions(int(row["epoch"]), run.val_images, run.val_masks, run.predict(run.val_images))

    def on_finish(self, run: Any, result: Any) -> None:  # pylint: disable=unused-argument
        """Flush and close the event file."""
        if self.logger is not None:
            self.logger.close()


def make_hook(config: dict[str, Any]) -> TensorBoardHook | None:
    """The hook when TENSORBOARD is on."""
    return TensorBoardHook() if config["TENSORBOARD"] else None
