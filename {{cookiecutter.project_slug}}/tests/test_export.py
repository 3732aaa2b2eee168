"""export.py with onnxruntime itself: the file of each task gives torch's logits at sizes and batches other than the
check's, holds its weights (no sidecar) and the metadata contract of utils/onnx_model.py; what cannot be exported,
or would replace the checkpoint, is refused with one line and leaves no file."""

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from checkpoints import save_checkpoint

import export
from config.paths import GlobalConfig
from utils.onnx_model import KEYS, OnnxModelError, read_metadata
from utils.prediction import load_predictor

STATS = {"method": "meanstd", "mean": [0.4, 0.5], "std": [0.2, 0.1]}
TASKS = {  # task: (classes, bands, stats, NODATA); each export takes 5 to 10 s on 2 cores: the slow tier's
    "binary": (["foreground"], 2, STATS, 0),
    "multiclass": (["background", "road", "roof"], 1, None, None),
    "multilabel": (["road", "roof"], 3, None, float("nan")),
}


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """export.main: exit status, stdout, stderr."""
    status = export.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_onnx_gives_torch_logits_and_the_metadata(
    task: str, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    classes, bands, stats, nodata = TASKS[task]
    weights = save_checkpoint(
        global_config.WEIGHT_DIR / "run1" / "best.pt", task, classes, bands, stats, DATASET_CONFIG={}, NODATA=nodata
    )
    status, out, err = run(capsys)  # latest's best.pt
    assert (status, err) == (0, "")
    path = weights.with_suffix(".onnx")
    size = re.search(rf"^{re.escape(str(weights))} -> {re.escape(str(path))} \(([\d.]+) MB\)$", out, re.M)
    assert size and float(size[1]) == pytest.approx(path.stat().st_size / 1e6, abs=0.006)
    checked = re.search(r"on 2x(\d)x64x96 and 1x\d+x96x64 images: max \|logits difference\| (\S+)$", out, re.M)
    assert checked and int(checked[1]) == bands and float(checked[2]) < export.TOLERANCE
    assert sorted(p.name for p in weights.parent.iterdir()) == ["best.onnx", "best.pt"]  # no .data, no .partial
    assert not onnx.load(str(path), load_external_data=False).graph.initializer[0].HasField("data_location")

    assert read_metadata(path) == {
        "format_version": "1",
        "task": task,
        "classes": classes,
        "in_channels": bands,
        "channels": bands,
        "divisor": 4,  # the tiny U-Net's 2**depth
        "threshold": 0.5,
        "normalization": stats,
        "nodata": None if nodata is None or np.isnan(nodata) else nodata,  # NaN: no data anyway, and not JSON
        "run_name": "run1",
        "source": weights.name,  # no local path in a shipped file
        "torch_version": torch.__version__,
    }
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("image", ["batch", bands, "height", "width"])]
    outputs = [("logits", ["batch", len(classes), "height", "width"])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == outputs
    model = load_predictor(weights, torch.device("cpu")).model
    rng = np.random.default_rng(1)
    for shape in [(3, bands, 20, 28), (1, bands, 44, 8)]:  # neither size nor batch is the check's
        images = rng.standard_normal(shape, dtype=np.float32)
        (logits,) = session.run(["logits"], {"image": images})
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        assert logits.shape == (shape[0], len(classes), *shape[2:])
        assert np.abs(logits - expected).max() < 1e-4
        assert np.abs(expected).max() > 1e-3  # logits that are not all ~0: the comparison says something


def test_refusals_are_one_line_and_write_nothing(
    global_config: GlobalConfig, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    weights = save_checkpoint(global_config.WEIGHT_DIR / "run1" / "best.pt")
    before = weights.read_bytes()
    cv = global_config.LOG_DIR / "cv1"
    cv.mkdir(parents=True)
    (cv / "cv.json").write_text(json.dumps({"folds": 1, "runs": {"0": "run1"}}), encoding="utf-8")
    (weights.parent / "last.pt").write_bytes(before)
    cases = {
        ("--weights", "nope"): "error: --weights nope: neither a checkpoint file nor a run with ",
        ("--weights", "run1", "run1"): "error: --weights takes one checkpoint, got 2: an ensemble is not one model",
        ("--weights", "cv1"): "error: --weights cv1 is a cross-validation; export one fold's run or checkpoint",
        ("-o", str(tmp_path)): f"error: -o {tmp_path} is a folder; name the file, e.g. {tmp_path / 'model.onnx'}",
        ("--weights", str(weights), "-o", str(weights)): f"error: -o {weights} is the checkpoint itself; ",
    }
    for args, line in cases.items():
        status, out, err = run(capsys, *args)
        assert (status, out) == (2, ""), args
        assert err.startswith(line) and err.count("\n") == 1, (args, err)
    assert weights.read_bytes() == before
    assert sorted(p.name for p in weights.parent.iterdir()) == ["best.pt", "last.pt"]


def test_no_runs_says_how(global_config: GlobalConfig, capsys: pytest.CaptureFixture) -> None:
    status, _, err = run(capsys)
    assert status == 2
    no_run = f"latest: no run with a best.pt in {global_config.WEIGHT_DIR}; train first"
    assert err == f"error: {no_run} (or pass --weights)\n"


@pytest.mark.slow
def test_a_failed_check_keeps_no_file(
    global_config: GlobalConfig, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = save_checkpoint(global_config.WEIGHT_DIR / "run1" / "best.pt")
    monkeypatch.setattr(export, "TOLERANCE", 0.0)  # float32 kernels never agree to the last bit: the check fails
    status, out, err = run(capsys, "-o", str(global_config.WEIGHT_DIR / "out" / "m.onnx"))
    assert (status, out) == (2, "")
    assert re.fullmatch(r"error: onnxruntime's logits differ from torch's by \S+ \(over 0\)\n", err)
    assert sorted(p.name for p in weights.parent.parent.rglob("*") if p.is_file()) == ["best.pt"]


def test_read_metadata_refuses_other_files(tmp_path: Path) -> None:
    text = tmp_path / "not.onnx"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(OnnxModelError, match=r"not\.onnx: onnxruntime cannot open it \("):
        read_metadata(text)
    identity = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["image"], ["logits"])],
            "g",
            [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 18)],
    )
    identity.ir_version = 8
    plain = tmp_path / "plain.onnx"
    onnx.save(identity, str(plain))
    with pytest.raises(OnnxModelError, match=f"no {', '.join(KEYS)} in its metadata"):
        read_metadata(plain)
    onnx.helper.set_model_props(identity, {key: json.dumps("2" if key == "format_version" else 0) for key in KEYS})
    onnx.save(identity, str(plain))
    with pytest.raises(OnnxModelError, match="format version '2'; this reader knows '1'"):
        read_metadata(plain)
