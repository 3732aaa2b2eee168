"""A cross-validation's scores: each fold's checkpoints on its own validation images, and cv_summary.csv.

``cv`` is a :class:`training.folds.CrossValidation` (its ``folder``, ``config`` and ``global_config``). Each fold is
scored after its run with the batches validation makes, so that last.pt's figures are the last row of its
history.csv; the summary adds the folds' sums and counts, so that the out-of-fold value treats every image of every
fold as one set, with validation's rules (utils/metric_sums.py).
"""

import json
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Subset

from config.device import get_device
from training import data
from training.build import LOGGER, instantiate
from utils.data.samples import SegmentationSamples
from utils.evaluation import evaluate_whole, tables
from utils.files import atomic_write
from utils.metric_sums import MetricSums
from utils.prediction import load_predictor

CHECKPOINTS = {"last.pt": False, "best.pt": True}  # file -> optimistic (chosen on the images it is scored on)


def scored(cv: Any, fold: int, run_name: str) -> bool:
    """Whether fold_<i>.json holds the scores of ``run_name`` (not of a run that the fold had before)."""
    path = cv.folder / f"fold_{fold}.json"
    return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("run_name") == run_name


def score_fold(cv: Any, fold: int, run_name: str) -> None:
    """fold_<i>.json and fold_<i>_per_image.csv: last.pt and best.pt on the fold's validation images, with the
    batches validation makes (so last.pt's figures are history.csv's last row)."""
    dataset = instantiate(cv.config, "DATASET")
    indices = np.flatnonzero(data.fold_assignment(cv.config, dataset)[0] == fold).tolist()
    names = pd.read_csv(cv.folder / "folds.csv", dtype=str)["image"].iloc[indices].tolist()
    device, scores, per_image = get_device(cv.config["DEVICE"]), {"run_name": run_name}, []
    for file in CHECKPOINTS:
        path = cv.global_config.run_weight_dir(run_name) / file
        if not path.is_file():  # best.pt of a run whose metric was never defined
            continue
        predictor = load_predictor(path, device)
        samples = SegmentationSamples(
            Subset(dataset, indices), data.mask_encoder(cv.config), predictor.stats, cv.config["NODATA"]
        )
        result = evaluate_whole(predictor, samples, cv.config["DATA_LOADER_CONFIG"], cv.config["METRICS"])
        values = {f"val_{key}": value for key, value in result.means().items()}
        scores[file] = {"values": values, "totals": result.sums.totals()}
        table = tables(result, names, predictor.classes)["per_image"]
        table.insert(1, "fold", fold)
        table.insert(2, "checkpoint", file)
        per_image.append(table)
    with atomic_write(cv.folder / f"fold_{fold}_per_image.csv") as file:
        pd.concat(per_image).to_csv(file, index=False, float_format="%.6g", na_rep="nan")
    with atomic_write(cv.folder / f"fold_{fold}.json") as file:
        file.write(json.dumps(scores, indent=2) + "\n")


def summarize(cv: Any) -> pd.DataFrame | None:
    """cv_summary.csv and out_of_fold.csv once every fold is scored (else None). Per checkpoint and metric
    column: ``mean`` and ``std`` (ddof 1) over the folds where it is defined, their number ``folds``, each
    ``fold_<i>``, and ``out_of_fold``: every image of every fold as one set, with the rules of validation
    (utils/metric_sums.py: a mean over the images where it is defined, or the pooled value)."""
    paths = [cv.folder / f"fold_{fold}.json" for fold in range(cv.config["FOLDS"])]
    if not all(path.is_file() for path in paths):
        return None
    folds = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    sums = MetricSums(cv.config["METRICS"], cv.config["CLASSES"], cv.config["TASK"], prefix="val_")
    rows = []
    for file, optimistic in CHECKPOINTS.items():
        per_fold = [fold.get(file) for fold in folds]
        totals = np.sum([s["totals"] for s in per_fold], axis=0).tolist() if all(per_fold) else None
        pooled = sums.compute(totals) if totals is not None else {}
        for column in sums.compute():
            values = pd.Series([s["values"][column] if s else np.nan for s in per_fold], dtype=float)
            rows.append({
                "checkpoint": file, "optimistic": optimistic, "metric": column, "mean": values.mean(),
                "std": values.std(), "folds": int(values.notna().sum()), "out_of_fold": pooled.get(column, np.nan),
                **{f"fold_{i}": value for i, value in enumerate(values)},
            })  # fmt: skip
    summary = pd.DataFrame(rows)
    per_image = [pd.read_csv(cv.folder / f"fold_{fold}_per_image.csv") for fold in range(len(folds))]
    with atomic_write(cv.folder / "out_of_fold.csv") as file:
        pd.concat(per_image).to_csv(file, index=False, float_format="%.6g", na_rep="nan")
    with atomic_write(cv.folder / "cv_summary.csv") as file:
        summary.to_csv(file, index=False, float_format="%.6g", na_rep="nan")
    headline = [f"val_{name}{pooled}" for name in cv.config["METRICS"] for pooled in ("", "_pooled")]
    for file, rows in summary[summary["metric"].isin(headline)].groupby("checkpoint", sort=False):
        figures = ", ".join(
            f"{row.metric} {row.mean:.4f} ± {row.std:.4f} (out-of-fold {row.out_of_fold:.4f})"
            for row in rows.itertuples()
        )
        label = " (optimistic: chosen on these images)" if CHECKPOINTS[str(file)] else ""
        LOGGER.info("cross-validation %s, %s%s: %s", cv.name, file, label, figures)
    return summary
