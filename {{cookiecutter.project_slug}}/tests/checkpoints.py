"""Checkpoints without training, for the tests of predict.py and evaluate.py: a seeded, untrained U-Net saved with
the config keys that predict and evaluate read, for any task, band count and normalisation; and an ONNX file of the
export contract built in milliseconds (export.py takes seconds: its tests are the slow tier's)."""

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from config.serialize import to_jsonable
from models.unet import UNet
from training.checkpoint import FORMAT_VERSION
from utils.onnx_model import INPUT_NAME, OUTPUT_NAME, metadata_props

TINY_MODEL = {"base_channels": 4, "depth": 2}


def save_checkpoint(
    path: Path,
    task: str = "binary",
    classes: list[str] | None = None,
    bands: int = 1,
    stats: dict[str, Any] | None = None,
    old: bool = False,
    **config: Any,
) -> Path:
    """An untrained U-Net (seed 0) in a checkpoint at ``path``; ``old``: without TASK, CLASSES and normalisation,
    as checkpoints written before they existed. ``config``: more keys of the checkpoint's config."""
    classes = classes or ["foreground"]
    model_config = {"in_channels": bands, "out_channels": len(classes), **TINY_MODEL}
    torch.manual_seed(0)
    model = UNet(**model_config)
    saved = {"MODEL": UNet, "MODEL_CONFIG": model_config, "DATA_LOADER_CONFIG": {"batch_size": 4}, **config}
    if not old:
        saved.update(TASK=task, CLASSES=classes)
    checkpoint = {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": to_jsonable(saved)}
    if not old:
        checkpoint["normalization"] = stats
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def save_onnx(
    path: Path,
    task: str = "binary",
    classes: list[str] | None = None,
    bands: int = 1,
    stats: dict[str, Any] | None = None,
    nodata: float | None = None,
) -> Path:
    """A seeded 1x1 convolution (bands -> len(classes) logits, divisor 4) as export.py's contract has it: input
    ``image`` [N, C, H, W], output ``logits`` [N, K, H, W], N, H and W dynamic, the metadata of utils/onnx_model.py
    (run ``onnx_run``). A real graph that onnxruntime runs, without torch's exporter."""
    classes = classes or ["foreground"]
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (len(classes), bands, 1, 1)).astype(np.float32)
    bias = rng.normal(0, 0.1, len(classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", [INPUT_NAME, "weight", "bias"], [OUTPUT_NAME])],
        "pointwise",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", bands, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(classes), "height", "width"])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads since 1.10
    metadata = {"task": task, "classes": classes, "in_channels": bands, "channels": bands, "divisor": 4}
    metadata.update(threshold=0.5, normalization=stats, nodata=nodata, run_name="onnx_run", source="best.pt")
    helper.set_model_props(model, metadata_props({**metadata, "torch_version": "none"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
