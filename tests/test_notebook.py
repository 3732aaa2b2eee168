"""notebooks/explore_runs.ipynb of a baked project, executed top to bottom with a real kernel after short runs.

Two one-epoch runs of a few samples (the default binary config, then configs/multiclass.py) go to a LOG_DIR and
WEIGHT_DIR outside the project, as a user moves them; nbclient then runs every cell with an ipykernel on this
interpreter and fails on any error. The outputs must hold the experiments table, the curves, and the grid of the
best run, whose masks show the class colours, and say that there is no cross-validation yet; after a cross-validation
of two folds, the notebook runs again and shows its summary and the figure of its folds. The committed notebook holds
no outputs.
"""

import base64
import io
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
from conftest import TEMPLATE_DIR, clean_env, run
from nbclient import NotebookClient
from PIL import Image

NOTEBOOK = Path("notebooks") / "explore_runs.ipynb"
KERNEL = "explore-runs-test"
# One epoch of 16 samples of 32 x 32 pixels with a small model: a few seconds per run on a CPU.
TINY = ["--epochs", "1", "--set", "DATASET_CONFIG.n_samples=16", "--set", "DATASET_CONFIG.size=32"]
TINY += ["--set", "MODEL_CONFIG.base_channels=4", "--set", "MODEL_CONFIG.depth=2", "--set", "DEVICE='cpu'"]
# configs/multiclass.py's classes 1 and 2 (utils/tracking/colours.py PALETTE, as 8-bit RGB)
CLASS_COLOURS = [(230, 26, 26), (26, 179, 51)]


def register_kernel(folder: Path) -> None:
    """A kernel spec that starts an ipykernel on this interpreter (the one with the project's packages), found
    first through JUPYTER_PATH: whatever python3 kernel the machine has, the notebook runs here."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list[str]:
    """The ``kind`` data (text/html, image/png, ...) of every output, in order; streams count as text/plain."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and kind == "text/plain":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return found


def has_colour(png: str, rgb: tuple[int, int, int]) -> bool:
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")).reshape(-1, 3).astype(int)
    return bool((np.abs(pixels - rgb).max(axis=1) <= 2).any())


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_notebook_runs_top_to_bottom_after_short_runs(cookies, tmp_path, monkeypatch):
    result = cookies.bake()
    assert result.exception is None, result.exception
    project = result.project_path
    env = clean_env()
    runs = tmp_path / "elsewhere"  # LOG_DIR and WEIGHT_DIR moved out of the project, as the notebook must follow
    env.update(LOG_DIR=str(runs / "logs"), WEIGHT_DIR=str(runs / "weights"), OMP_NUM_THREADS="1")
    run([sys.executable, "train.py", *TINY], cwd=project, timeout=300, env=env)
    run([sys.executable, "train.py", "--config", "configs/multiclass.py", *TINY], cwd=project, timeout=300, env=env)
    experiments = pd.read_csv(runs / "logs" / "experiments.csv")
    assert experiments["status"].tolist() == ["completed", "completed"]
    multiclass = experiments.loc[experiments["session_name"] == "unet_shapes_multiclass", "run_name"].item()

    register_kernel(tmp_path / "jupyter")
    for name, value in {**env, "JUPYTER_PATH": str(tmp_path / "jupyter")}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    for name in set(os.environ) - set(env) - {"JUPYTER_PATH"}:
        monkeypatch.delenv(name)
    notebook = nbformat.read(project / NOTEBOOK, as_version=4)
    # The multiclass run is shown whichever run scored best: the grid is then the coloured one.
    cell = next(cell for cell in notebook.cells if "RUN = None" in cell.source)
    cell.source = cell.source.replace("RUN = None", f"RUN = {multiclass!r}")
    execute(notebook, project)

    html = "\n".join(outputs(notebook, "text/html"))
    assert "<table" in html and all(name in html for name in experiments["run_name"])
    text = "\n".join(outputs(notebook, "text/plain"))
    assert f"runs: {runs / 'logs'}" in text and "2 of 2 runs, best first by best_val_dice" in text
    assert f"{multiclass}: multiclass, classes background, circle_triangle, rectangle" in text
    assert f"no cross-validation in {runs / 'logs'} yet" in text
    curves, grid = outputs(notebook, "image/png")
    width, height = Image.open(io.BytesIO(base64.b64decode(curves))).size
    assert width > 2 * height > 600  # the two panels side by side (cropped to their content by the inline backend)
    assert all(has_colour(grid, colour) for colour in CLASS_COLOURS)
    # Nothing was written next to the notebook or into the project's own logs/ and weights/.
    assert not (project / "logs").exists() and not (project / "weights").exists()

    # A cross-validation: its summary (last.pt's figures, best.pt's beside) and a panel of its folds per metric.
    run([sys.executable, "train.py", "--folds", "2", *TINY], cwd=project, timeout=300, env=env)
    cv_name = next((runs / "logs").glob("*/cv_summary.csv")).parent.name
    notebook = nbformat.read(project / NOTEBOOK, as_version=4)
    execute(notebook, project)
    html = "\n".join(outputs(notebook, "text/html"))
    assert cv_name in html and "optimistic_mean" in html and "out_of_fold" in html
    assert f"{cv_name}: its fold runs" in "\n".join(outputs(notebook, "text/plain"))
    *_, folds = outputs(notebook, "image/png")
    assert len(outputs(notebook, "image/png")) == 3
    width, height = Image.open(io.BytesIO(base64.b64decode(folds))).size
    assert width > 1.5 * height  # val_dice and val_dice_pooled side by side


def execute(notebook: nbformat.NotebookNode, project: Path) -> None:
    """Run every cell of ``notebook`` with the test's kernel, from the project's notebooks/ folder."""
    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(project / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error


def test_make_notebook_opens_it_with_jupyterlab(cookies):
    result = cookies.bake()
    assert result.exception is None, result.exception
    project = result.project_path
    assert re.search(r"^  notebook ", run(["make", "help"], cwd=project, timeout=60, env=clean_env()).stdout, re.M)
    dry_run = run(["make", "-n", "notebook", "PYTHON=python"], cwd=project, timeout=60, env=clean_env())
    assert "python -m jupyterlab notebooks/explore_runs.ipynb" in dry_run.stdout
