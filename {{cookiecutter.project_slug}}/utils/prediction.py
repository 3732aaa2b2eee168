"""What predict.py and evaluate.py share: a checkpoint's model with what it was trained on (task, classes, bands,
normalisation, no-data value), images prepared as training prepared them, and label maps and probabilities written as
PNG, TIFF or GeoTIFF.

Checkpoints written before tasks and normalisation existed hold neither: they are binary, class "foreground", with
no normalisation and no no-data value, as they were trained.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from config.serialize import from_jsonable
from training.checkpoint import CheckpointError, load_checkpoint
from utils.data.normalization import invalid_pixels, normalize
from utils.metrics import predicted_labels, probabilities
from utils.outputs import CHUNK_ROWS, TIFF_SUFFIXES, georeference, output_names, write_array
from utils.tiling import sliding_window

__all__ = [  # the writers live in utils/outputs.py (torch-free, for the ONNX path); re-exported as before
    "CHUNK_ROWS",
    "TIFF_SUFFIXES",
    "Predictor",
    "georeference",
    "label_map",
    "load_model",
    "load_predictor",
    "output_names",
    "predict_mask",
    "probability_map",
    "write_array",
    "write_outputs",
]


@dataclass
class Predictor:
    """A checkpoint's model in eval mode and what its run was trained with (``config``: the checkpoint's, as saved).
    ``fill``: what no-data pixels become in prepared images: 0 after normalisation; NaN for an ensemble
    (utils/ensemble.py), whose members normalise raw images with their own statistics and zero those pixels."""

    model: nn.Module
    config: dict[str, Any]
    stats: dict[str, Any] | None
    run_name: str
    extensions: dict[str, Any] = field(default_factory=dict)  # the checkpoint's extension states (an MLflow run id)
    fill: float = 0.0

    @property
    def task(self) -> str:
        """binary, multiclass or multilabel (binary for checkpoints older than tasks)."""
        return str(self.config.get("TASK", "binary"))

    @property
    def classes(self) -> list[str]:
        """The class names, one per output channel (binary: the foreground's)."""
        return list(self.config.get("CLASSES") or ["foreground"])

    @property
    def in_channels(self) -> int:
        """The bands the model takes."""
        return int(self.config["MODEL_CONFIG"].get("in_channels", 1))

    @property
    def channels(self) -> int:
        """The bands images are read with: the run's DATASET_CONFIG channels, else the model's (a 1- or 3-band
        model converts grey and colour files as training's reader did; other counts must match the file)."""
        return int((self.config.get("DATASET_CONFIG") or {}).get("channels") or self.in_channels)

    @property
    def divisor(self) -> int:
        """What the model's input sides must divide by (1 for a model without ``divisor``)."""
        return int(getattr(self.model, "divisor", 1))

    @property
    def nodata(self) -> float | None:
        """The image value that means no data (NaN always does), or None."""
        return self.config.get("NODATA")

    def prepare(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """An image as read ``[C, H, W]`` -> ``[1, C, H, W]`` float32 as training saw it: normalised with the run's
        statistics, no-data pixels ``fill`` after normalisation (NaN would spread through every tile it touches)."""
        raw = torch.as_tensor(image, dtype=torch.float32)
        invalid = invalid_pixels(raw, self.nodata)
        prepared = normalize(raw, self.stats)
        if invalid.any():
            prepared = prepared.clone() if prepared is raw else prepared
            prepared[:, invalid] = self.fill
        return prepared[None]


def load_predictor(weights: Path, device: torch.device) -> Predictor:
    """Rebuild the model of a checkpoint from its own config and load its weights, on ``device``, in eval mode.

    Raises:
        CheckpointError: the checkpoint cannot be read, or its model cannot be rebuilt from its config.
    """
    checkpoint = load_checkpoint(weights, map_location=device)
    try:
        config = from_jsonable({key: checkpoint["config"][key] for key in ("MODEL", "MODEL_CONFIG")})
        model = config["MODEL"](**config["MODEL_CONFIG"])
        model.load_state_dict(checkpoint["model"])
    except (ImportError, TypeError, ValueError, RuntimeError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{weights}: cannot rebuild its model ({message})") from None
    run_name = str(checkpoint.get("run_name") or weights.resolve().parent.name)
    extensions = checkpoint.get("extensions") or {}
    return Predictor(
        model.to(device).eval(), checkpoint["config"], checkpoint.get("normalization"), run_name, extensions
    )


def load_model(weights: Path, device: torch.device) -> tuple[nn.Module, int]:
    """The model of a checkpoint (see :func:`load_predictor`) and the bands it takes."""
    predictor = load_predictor(weights, device)
    return predictor.model, predictor.in_channels


def label_map(logits: torch.Tensor, task: str, threshold: float = 0.5) -> np.ndarray:
    """Label map of logits ``[1, K, H, W]``: binary uint8 ``[H, W]`` 0/255; multiclass ``[H, W]`` class indices
    (uint8, uint16 beyond 256 classes); multilabel uint8 ``[K, H, W]`` 0/255."""
    classes = logits.shape[1]
    dtype = np.uint16 if task == "multiclass" and classes > 256 else np.uint8
    scale = 1 if task == "multiclass" else 255
    rows = []
    for start in range(0, logits.shape[-2], CHUNK_ROWS):
        labels = predicted_labels(logits[..., start : start + CHUNK_ROWS, :], task, threshold)[0]
        rows.append((labels * scale).numpy().astype(dtype))
    labels = np.concatenate(rows, axis=-2)
    return labels if task == "multilabel" else labels[0]


def probability_map(logits: torch.Tensor, task: str) -> np.ndarray:
    """Float32 ``[K, H, W]`` probabilities (sigmoid, or softmax over classes) of logits ``[1, K, H, W]``."""
    rows = [
        probabilities(logits[..., start : start + CHUNK_ROWS, :], task)[0].numpy()
        for start in range(0, logits.shape[-2], CHUNK_ROWS)
    ]
    return np.concatenate(rows, axis=-2).astype(np.float32, copy=False)


def predict_mask(model: nn.Module, image: np.ndarray, device: torch.device, threshold: float = 0.5) -> np.ndarray:
    """Binary mask (H, W, uint8 0/255) of one [C, H, W] image of a binary model, in one pass (padded to the
    model's divisor and cropped back)."""
    logits = sliding_window(model, torch.from_numpy(image)[None], None, device=device)
    return label_map(logits, "binary", threshold)


def write_outputs(paths: list[Path], logits: torch.Tensor, task: str, threshold: float, source: Path) -> None:
    """Write the label map of ``logits`` [1, K, H, W] to ``paths[0]`` and, with a second path, the probabilities;
    GeoTIFFs with the georeferencing of ``source`` when it has one (see :func:`output_names`)."""
    geo = georeference(source)
    write_array(paths[0], label_map(logits, task, threshold), geo)
    if len(paths) > 1:
        write_array(paths[1], probability_map(logits, task), geo)
