"""predict.py with an .onnx file of export.py, in a process where torch cannot be imported: the masks and
probabilities of the checkpoint it came from, and the checkpoint path's refusals."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from checkpoints import save_checkpoint, save_onnx
from PIL import Image

import export
import predict
from utils.prediction import load_predictor

TASKS = {  # task: (classes, bands, stats, NODATA)
    "binary": (["foreground"], 2, {"method": "meanstd", "mean": [0.4, 0.5], "std": [0.2, 0.1]}, 0.0),
    "multiclass": (["background", "road", "roof"], 1, None, None),
    "multilabel": (["road", "roof"], 3, None, None),
}
NO_TORCH = (  # None in sys.modules: "import torch" raises ImportError, as where torch is not installed
    "import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path('predict.py', run_name='__main__')"
)


# ...and then, predict.py having exited, the top-level modules it imported (not those of the interpreter's start,
# such as a .pth file's) as a JSON list on the last line
LIST_MODULES = (
    "import json, runpy, sys\nsys.modules['torch'] = None\nsys.argv = sys.argv[1:]\nbefore = set(sys.modules)\n"
    "try:\n    runpy.run_path('predict.py', run_name='__main__')\nfinally:\n"
    "    print(json.dumps(sorted({m.split('.')[0] for m, v in sys.modules.items() if v and m not in before})))\n"
)


def no_torch_predict(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """predict.py in a subprocess where ``import torch`` raises ImportError; ``cwd``: a folder holding predict.py
    and what it imports (default: the project)."""
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, "predict.py", *args],
        cwd=cwd or Path(predict.__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )


def inference_distributions() -> set[str]:
    """The distributions of requirements-inference.txt and everything they require (their extras left out)."""
    root = Path(predict.__file__).parent
    text = (root / "requirements-inference.txt").read_text(encoding="utf-8")
    todo = re.findall(r"^([A-Za-z0-9_.-]+)", text, re.MULTILINE)
    found: set[str] = set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name not in found:
            found.add(name)
            requires = importlib.metadata.requires(name) or []
            todo += [re.match(r"[A-Za-z0-9_.-]+", r)[0] for r in requires if "extra ==" not in r]
    return found


def imported_distributions(*args: str, cwd: Path | None = None) -> set[str]:
    """The distributions (not the standard library's or the project's modules) that predict.py imports, run with
    ``args`` in a process without torch; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, "predict.py", *args],
        cwd=cwd or Path(predict.__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    owners = importlib.metadata.packages_distributions()
    modules = set(json.loads(done.stdout.splitlines()[-1])) - set(sys.stdlib_module_names)
    return {re.sub(r"[-_.]+", "-", dist).lower() for module in modules for dist in owners.get(module, [])}


def onnx_scenes(folder: Path) -> tuple[Path, Path]:
    """(a small .onnx file, a folder of two PNG scenes) in ``folder``."""
    scenes = folder / "scenes"
    scenes.mkdir(parents=True)
    for name, size in {"a": (40, 52), "b": (33, 20)}.items():
        Image.fromarray(np.random.default_rng(1).integers(0, 255, size, dtype=np.uint8)).save(scenes / f"{name}.png")
    return save_onnx(folder / "model.onnx"), scenes


def test_the_onnx_path_imports_only_requirements_inference(tmp_path: Path) -> None:
    """An environment of requirements-inference.txt (the inference image's) predicts: nothing else is imported."""
    model, scenes = onnx_scenes(tmp_path)
    args = ["-i", str(scenes), "-o", str(tmp_path / "out"), "--weights", str(model), "--tile", "16", "--probabilities"]
    imported = imported_distributions(*args)
    assert {"onnxruntime", "numpy", "pillow", "tifffile"} <= imported
    assert imported <= inference_distributions(), imported - inference_distributions()
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_onnx_predicts_the_checkpoints_masks_without_torch(task: str, tmp_path: Path) -> None:
    classes, bands, stats, nodata = TASKS[task]
    weights = save_checkpoint(
        tmp_path / "run" / "best.pt", task, classes, bands, stats, DATASET_CONFIG={}, NODATA=nodata
    )
    onnx = tmp_path / "best.onnx"
    export.write_onnx(load_predictor(weights, torch.device("cpu")), weights, onnx, None)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    rng = np.random.default_rng(0)
    for name, (height, width) in {"small": (21, 30), "odd": (75, 61), "large": (150, 133)}.items():
        image = rng.random((bands, height, width)).astype(np.float32)
        image[:, 3, 4] = 0.0  # a no-data pixel for the binary model
        tifffile.imwrite(scenes / f"{name}.tif", image)
    common = ["-i", str(scenes), "--tile", "64", "--probabilities"]
    assert predict.main([*common, "-o", str(tmp_path / "ckpt"), "--weights", str(weights), "--device", "cpu"]) == 0
    done = no_torch_predict(*common, "-o", str(tmp_path / "onnx"), "--weights", str(onnx))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert f"3 mask(s) written to {tmp_path / 'onnx'} with {onnx}" in done.stdout
    for name in ("small", "odd", "large"):
        expected = tifffile.imread(tmp_path / "ckpt" / f"{name}_prob.tif")
        probabilities = tifffile.imread(tmp_path / "onnx" / f"{name}_prob.tif")
        assert np.abs(probabilities - expected).max() < 1e-4
        labels, expected_labels = (tifffile.imread(tmp_path / d / f"{name}.tif") for d in ("onnx", "ckpt"))
        differ = labels != expected_labels
        near = np.abs(expected - 0.5) < 1e-4 if task != "multiclass" else np.zeros_like(differ)
        assert not (differ & ~near.reshape(differ.shape)).any()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (["best.pt"], "--weights best.pt: a checkpoint needs torch and the training code, and torch is missing here"),
        ([], "--weights (the latest run): a checkpoint needs torch"),
        (["a.onnx", "b.onnx"], "one .onnx file alone"),
        (["a.onnx", "best.pt"], "one .onnx file alone"),
        (["missing.onnx"], "onnxruntime cannot open it"),
    ],
)
def test_onnx_refusals_are_one_line(weights: list[str], message: str, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    done = no_torch_predict(
        "-i", str(image), "-o", str(tmp_path / "out"), *(["--weights", *weights] if weights else [])
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
