"""What notebooks/explore_runs.ipynb shows of the best run beyond the report's table and curves: a few of its
validation samples beside its predictions, as a grid of pictures.

Each step is the one training and prediction take, so that the notebook shows what the run saw: the run's config
from its config.json (:func:`run_config`), its validation split (``training.data.build_datasets``) normalised with the
checkpoint's statistics, the checkpoint's model (``utils.prediction.load_predictor``) over whole images
(``utils.tiling.sliding_window``), label maps of ``utils.metrics.predicted_labels`` in the colours of
:mod:`utils.tracking.colours`.
"""

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from config.serialize import from_jsonable
from training.data import build_datasets
from utils.metrics import dice, predicted_labels
from utils.prediction import Predictor
from utils.tiling import sliding_window
from utils.tracking.colours import image_colours, label_colours, legend_colours
from utils.tracking.report_table import ReportError

Sample = tuple[torch.Tensor, torch.Tensor]  # (image [C, H, W] float32, target) as the validation set gives them
PANEL_INCHES, DPI = 2.6, 80  # each picture of the grid


def run_config(log_dir: Path, run_name: str) -> dict[str, Any]:
    """The config of a run as it trained: ``LOG_DIR/<run>/config.json`` with its classes and functions rebuilt.

    Raises:
        ReportError: the run has no config.json there.
    """
    path = log_dir / run_name / "config.json"
    if not path.is_file():
        raise ReportError(f"run {run_name} has no {path}")
    return from_jsonable(json.loads(path.read_text(encoding="utf-8"))["config"])


def best_checkpoint(table: pd.DataFrame, weight_dir: Path) -> tuple[str, Path]:
    """(run name, its best.pt) of the first run of ``table`` (sorted best first) that has a ``best.pt`` in
    ``weight_dir``: a run that failed before its first epoch has none.

    Raises:
        ReportError: no run of ``table`` has one.
    """
    for run_name in table["run_name"].astype(str):
        path = weight_dir / run_name / "best.pt"
        if path.is_file():
            return run_name, path
    raise ReportError(f"none of these {len(table)} runs has a best.pt in {weight_dir}")


def validation_samples(config: dict[str, Any], stats: Any, count: int = 4) -> list[Sample]:
    """The first ``count`` samples of the run's validation set, as validation saw them: its config's split and mask
    encoding, normalised with ``stats`` (the checkpoint's ``normalization``, so that nothing is recomputed)."""
    _, val_set, _ = build_datasets(config, {"normalization": stats})
    return [val_set[index] for index in range(min(count, len(val_set)))]  # type: ignore[arg-type]


@torch.no_grad()
def predict_samples(predictor: Predictor, samples: Sequence[Sample]) -> list[torch.Tensor]:
    """Logits ``[1, K, H, W]`` (CPU, float32) of each sample's image, whole, in one pass as validation does."""
    return [sliding_window(predictor.model, image[None], None) for image, _ in samples]


def sample_grid(samples: Sequence[Sample], logits: Sequence[torch.Tensor], task: str, classes: list[str]) -> Figure:
    """One row per sample: image | true mask | predicted mask (with the sample's dice, the mean over the classes where
    it is defined: "undefined" where truth and prediction are both empty), and a legend of the colours.

    The figure is detached from pyplot (nothing to close); a notebook shows it as a cell's value.
    """
    if not samples:
        raise ReportError("no validation sample to show")
    legend = legend_colours(task, classes)
    fig = Figure(figsize=(3 * PANEL_INCHES, len(samples) * PANEL_INCHES + 0.5), dpi=DPI)
    axes = fig.subplots(len(samples), 3, squeeze=False)
    for row, ((image, target), sample_logits) in enumerate(zip(samples, logits, strict=True)):
        target = target[None]
        score = float(dice(sample_logits, target, task).nanmean())  # NaN: nothing to find and nothing found
        shown = "undefined: both empty" if math.isnan(score) else f"{score:.3f}"
        panels = {
            "image": image_colours(image[None]),
            "true mask": label_colours(target, task),
            f"predicted (dice {shown})": label_colours(predicted_labels(sample_logits, task), task),
        }
        for axis, (title, panel) in zip(axes[row], panels.items(), strict=True):
            axis.imshow(panel[0].permute(1, 2, 0).numpy(), interpolation="nearest")
            axis.set_title(title, fontsize="small")
            axis.set_xticks([])
            axis.set_yticks([])
    handles = [Patch(facecolor=colour, edgecolor="0.5", label=name) for name, colour in legend.items()]
    if task == "multilabel" and len(classes) > 3:  # three channels of colour: the other labels have none
        handles.append(Patch(fill=False, edgecolor="none", label=f"not shown: {', '.join(classes[3:])}"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize="small", frameon=False)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.3 / fig.get_figheight(), bottom=0.5 / fig.get_figheight())
    return fig
