"""Small data: one model against the cross-validation's ensemble, with and without test-time augmentation.

Bakes the default project into a temporary folder and, on its multi-class example (``configs/multiclass.py``: three
classes, four bands), trains a cross-validation (``train.py --folds K``) on a small training set (``--samples``,
default 80 images). A held-out labelled folder of other synthetic images (``--test-samples``, another seed) is then
scored by ``evaluate.py`` with each fold's ``last.pt`` alone, with each alone and ``--tta``, with the K models as an
ensemble (``--weights <cv_name>``) and with the ensemble and ``--tta``. Printed as a Markdown table of dice per class
on the held-out images (mean over images where defined; ``pooled``: over all pixels), beside the cross-validation's
own out-of-fold estimate (``cv_summary.csv``: last.pt, and best.pt's optimistic figure), so that one reads how far
the unselected estimate is from data that no choice touched. Takes about 5 min on 2 CPU cores with the defaults.

Usage: ``python benchmarks/cv_ensemble.py --help``; ``--json FILE`` also writes the figures.
Never imports torchvision or fastai.vision.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from routine_overhead import cpu_model  # this script's folder is on sys.path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--folds", type=int, default=5, help="folds of the cross-validation (default: 5)")
    parser.add_argument("--samples", type=int, default=80, help="training images, all folds (default: 80)")
    parser.add_argument("--test-samples", type=int, default=200, help="held-out images (default: 200)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs a fold (default: 8, the config's)")
    parser.add_argument("--base-channels", type=int, default=16, help="MODEL_CONFIG.base_channels (default: 16)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def write_test_folder(project: Path, folder: Path, args: argparse.Namespace) -> None:
    """``--test-samples`` images of the multi-class example's generator with another seed: images/*.npy
    (channel-last, float32) and masks/*.png (class indices)."""
    code = (
        "import sys, numpy as np\nfrom pathlib import Path\nfrom PIL import Image\n"
        "from utils.data.synthetic import SyntheticShapes\n"
        "root = Path(sys.argv[1]); (root / 'images').mkdir(parents=True); (root / 'masks').mkdir()\n"
        "data = SyntheticShapes(n_samples=int(sys.argv[2]), size=int(sys.argv[3]), channels=4, num_classes=3, seed=1)\n"
        "for i in range(len(data)):\n"
        "    image, mask = data.generate(i)\n"
        "    np.save(root / 'images' / f'{i:04d}.npy', np.moveaxis(image, 0, -1))\n"
        "    Image.fromarray(mask[0].astype(np.uint8)).save(root / 'masks' / f'{i:04d}.png')\n"
    )
    run([sys.executable, "-c", code, str(folder), str(args.test_samples), str(args.size)], project)


def run(command: list[str], project: Path) -> str:
    """Run a command of the project from its root; its output, or SystemExit with its last lines."""
    proc = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False, env=dict(os.environ))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:3])} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout + proc.stderr


def evaluate(project: Path, logs: Path, test: Path, weights: list[str], name: str, tta: bool) -> pd.DataFrame:
    """evaluate.py's summary.csv (a row per class and ``mean``) of ``weights`` on the held-out folder."""
    command = [sys.executable, "evaluate.py", "--data", str(test), "--weights", *weights, "--name", name]
    run(command + ["--tta"] * tta, project)
    found = sorted(logs.glob(f"*/evaluation/{name}*/summary.csv"))  # TTA and ensembles add a suffix
    return pd.read_csv(found[-1]).set_index("class")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cookiecutter.main import cookiecutter  # noqa: PLC0415  # the template's tool, not the project's

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(tmp_path), default_config=True))
        logs, weights = tmp_path / "logs", tmp_path / "weights"
        os.environ.update(
            LOG_DIR=str(logs), WEIGHT_DIR=str(weights), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")
        )
        write_test_folder(project, tmp_path / "test", args)
        train = [sys.executable, "train.py", "--config", "configs/multiclass.py", "--folds", str(args.folds)]
        train += ["--epochs", str(args.epochs), "--set", f"DATASET_CONFIG.n_samples={args.samples}"]
        train += [
            "--set",
            f"DATASET_CONFIG.size={args.size}",
            "--set",
            f"MODEL_CONFIG.base_channels={args.base_channels}",
        ]
        clock = time.perf_counter()
        run(train + ["--set", "DEVICE='cpu'"], project)
        train_s = time.perf_counter() - clock
        cv_folder = next(path for path in logs.iterdir() if (path / "cv.json").is_file())
        runs = json.loads((cv_folder / "cv.json").read_text(encoding="utf-8"))["runs"]
        rows: dict[str, dict[str, float]] = {}
        classes = ["background", "circle_triangle", "rectangle"]
        for tta in (False, True):
            singles = [
                evaluate(project, logs, tmp_path / "test", [str(weights / runs[str(f)] / "last.pt")], f"f{f}{tta}", tta)
                for f in range(args.folds)
            ]
            label = "one model (a fold's last.pt)" + (" + TTA" if tta else "")
            rows[label] = figures(singles)
            ensemble = evaluate(project, logs, tmp_path / "test", [cv_folder.name], f"ensemble{tta}", tta)
            rows[f"{args.folds}-fold ensemble" + (" + TTA" if tta else "")] = figures([ensemble])
        summary = pd.read_csv(cv_folder / "cv_summary.csv").set_index(["checkpoint", "metric"])
        for checkpoint, label in (
            ("last.pt", "out-of-fold estimate (last.pt)"),
            ("best.pt", "out-of-fold, best.pt (optimistic)"),
        ):
            rows[label] = {c: summary.loc[(checkpoint, f"val_dice_{c}"), "out_of_fold"] for c in classes}
            rows[label]["mean"] = summary.loc[(checkpoint, "val_dice"), "out_of_fold"]
            rows[label]["pooled"] = summary.loc[(checkpoint, "val_dice_pooled"), "out_of_fold"]
    print_table(rows, classes, args, train_s, time.perf_counter() - started)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "train_s": train_s}, indent=2) + "\n", encoding="utf-8")
    return 0


def figures(summaries: list[pd.DataFrame]) -> dict[str, Any]:
    """Dice per class, its mean and pooled value; with several summaries (one model per fold) their mean and the
    spread of the mean dice as ``std``."""
    rows = [{**{c: s.loc[c, "dice"] for c in s.index if c != "mean"}, "mean": s.loc["mean", "dice"],
             "pooled": s.loc["mean", "dice_pooled"]} for s in summaries]  # fmt: skip
    result = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    result["std"] = float(np.std([row["mean"] for row in rows], ddof=1)) if len(rows) > 1 else float("nan")
    return result


def print_table(rows: dict[str, dict[str, float]], classes: list[str], args: argparse.Namespace, train_s: float,
                total_s: float) -> None:  # fmt: skip
    """The figures as a Markdown table, with what was run."""
    print(f"# {args.folds} folds of {args.samples} images ({args.size} px, 4 bands, 3 classes), {args.epochs} epochs; "
          f"held-out: {args.test_samples} images; {cpu_model()}")  # fmt: skip
    print(f"cross-validation trained in {train_s:.0f} s; the benchmark took {total_s:.0f} s\n")
    print("| model | " + " | ".join(f"dice {c}" for c in classes) + " | mean | pooled |")
    print("| --- |" + " ---: |" * (len(classes) + 2))
    for label, row in rows.items():
        spread = f" ± {row['std']:.4f}" if not np.isnan(row.get("std", np.nan)) else ""
        cells = [f"{row[c]:.4f}" for c in classes] + [f"{row['mean']:.4f}{spread}", f"{row['pooled']:.4f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
