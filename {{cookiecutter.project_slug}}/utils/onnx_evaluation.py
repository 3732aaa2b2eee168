"""evaluate.py with an exported model: the ``.onnx`` file of export.py predicts through predict.py's torch-free
predictor (utils/onnx_inference.OnnxPredictor: its normalisation, padding and sliding window, on onnxruntime); its
metadata says the task, classes, bands and no-data value. The file does not hold how masks map to classes
(MASK_VALUES, IGNORE_INDEX, MASK_THRESHOLD): those come from the project's config, which must then be of the same
task and classes, or the masks would be read for another model.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from utils.data.images import DataError
from utils.onnx_inference import OnnxPredictor

MASK_KEYS = ("MASK_VALUES", "IGNORE_INDEX", "MASK_THRESHOLD")  # the config's keys that read masks


@dataclass
class OnnxModel:
    """An exported model as utils/evaluation.samples_of reads a labelled folder for it: raw images (``stats`` None,
    no-data pixels NaN: ``fill``), normalised by :meth:`logits` as predict.py's ONNX path normalises them, and masks
    by ``config`` (the mask keys only)."""

    predictor: OnnxPredictor
    config: dict[str, Any]
    path: Path
    stats: None = None
    fill: float = float("nan")

    @property
    def task(self) -> str:
        """binary, multiclass or multilabel, as the file says."""
        return self.predictor.task

    @property
    def classes(self) -> list[str]:
        """The class names, one per output channel."""
        return list(self.predictor.metadata["classes"])

    @property
    def channels(self) -> int:
        """The bands images are read with."""
        return self.predictor.channels

    @property
    def divisor(self) -> int:
        """What a tile's side must divide by."""
        return self.predictor.divisor

    @property
    def nodata(self) -> float | None:
        """The image value that means no data (NaN always does), or None."""
        return self.predictor.metadata["nodata"]

    @property
    def run_name(self) -> str:
        """The run the file was exported from (its tables go to LOG_DIR/<run>/evaluation/)."""
        return str(self.predictor.metadata["run_name"])

    def logits(self, image: torch.Tensor, tile: int, overlap: float) -> torch.Tensor:
        """Float32 logits ``[1, K, H, W]`` of a raw image ``[C, H, W]`` (NaN: no data): prepared and predicted by
        onnxruntime, in ``tile`` x ``tile`` windows overlapping by ``overlap`` (0: one pass, padded to the divisor)."""
        prepared = self.predictor.prepare(image.numpy())
        return torch.from_numpy(self.predictor.logits(prepared, tile or None, overlap))


def load_onnx(path: str, device: str, config: dict[str, Any]) -> OnnxModel:
    """The exported model at ``path`` on ``device`` (auto, cpu, cuda, cuda:N), its masks read with ``config``'s
    mask keys (the project's TRAIN_CONFIG).

    Raises:
        OnnxModelError: onnxruntime cannot open the file, export.py did not write it, or a bad device.
        DataError: ``config``'s TASK or CLASSES are not the file's.
    """
    predictor = OnnxPredictor(Path(path), device)
    task, classes = str(config.get("TASK", "binary")), list(config.get("CLASSES") or ["foreground"])
    model = OnnxModel(predictor, {key: config.get(key) for key in MASK_KEYS}, Path(path))
    if (task, classes) != (model.task, model.classes):
        raise DataError(
            f"{path} is a {model.task} model of {model.classes} but config/train_config.py says {task} {classes}, "
            "which reads the masks (MASK_VALUES, IGNORE_INDEX); set TASK and CLASSES to the model's or evaluate its "
            "checkpoint"
        )
    return model
