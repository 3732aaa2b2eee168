"""predict.py with an .onnx file of export.py, in a process where torch cannot be imported: the masks and
probabilities of the checkpoint it came from, and the checkpoint path's refusals."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from checkpoints import save_checkpoint

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


def no_torch_predict(*args: str) -> subprocess.CompletedProcess:
    """predict.py in a subprocess where ``import torch`` raises ImportError."""
    root = Path(predict.__file__).parent
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, "predict.py", *args], cwd=root, capture_output=True, text=True, check=False
    )


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
        (["a.onnx", "b.onnx"], "one .onnx file alone"),
        (["a.onnx", "best.pt"], "one .onnx file alone"),
        (["missing.onnx"], "onnxruntime cannot open it"),
    ],
)
def test_onnx_refusals_are_one_line(weights: list[str], message: str, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    done = no_torch_predict("-i", str(image), "-o", str(tmp_path / "out"), "--weights", *weights)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
