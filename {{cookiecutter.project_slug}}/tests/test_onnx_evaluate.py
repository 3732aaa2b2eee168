"""evaluate.py with an .onnx file: the tables of a checkpoint, in their shape, from onnxruntime's predictions; a
trained model scores the same as checkpoint and as exported file; a file that does not fit the data or the config is
refused with one line."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from checkpoints import save_checkpoint, save_onnx
from onnx import numpy_helper
from PIL import Image
from test_evaluate import SIZES, evaluated, labelled_folder

import evaluate
import export
from config.paths import GlobalConfig
from config.train_config import TRAIN_CONFIG
from utils.data.images import read_image

CLASSES = list(TRAIN_CONFIG["CLASSES"])  # an exported model's classes must be the config's, which reads the masks


def test_an_onnx_file_gives_a_checkpoints_tables_from_its_own_predictions(
    tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    model = save_onnx(tmp_path / "model.onnx", TRAIN_CONFIG["TASK"], CLASSES)
    assert evaluate.main(["--data", str(folder), "--weights", str(model), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"5 image(s) of {folder} with {model}:" in out  # which file the figures are of
    tables = evaluated(global_config, "onnx_run", "set_onnx")  # the file's run, beside the checkpoint's own tables
    weights = save_checkpoint(global_config.WEIGHT_DIR / "run" / "best.pt", TRAIN_CONFIG["TASK"], CLASSES)
    assert evaluate.main(["--data", str(folder), "--weights", str(weights), "--device", "cpu"]) == 0
    capsys.readouterr()
    checkpoint_tables = evaluated(global_config, "run", "set")
    assert set(tables) == set(checkpoint_tables) == {"per_image", "summary", "confusion"}
    for name, table in tables.items():
        assert list(table.columns) == list(checkpoint_tables[name].columns), name
        assert table.shape == checkpoint_tables[name].shape, name
    # The confusion is what the file's 1x1 convolution predicts, pixel by pixel: onnxruntime's labels counted.
    weight, bias = (numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer)
    counts = np.zeros((2, 2), dtype=np.int64)
    for index in range(len(SIZES)):
        image = read_image(folder / "images" / f"tile_{index}.npy", 1)[0]
        truth = np.array(Image.open(folder / "masks" / f"tile_{index}.png")) > 0
        predicted = image * weight.item() + bias.item() > 0
        np.add.at(counts, (truth.astype(int).ravel(), predicted.astype(int).ravel()), 1)
    np.testing.assert_array_equal(tables["confusion"].set_index("truth").to_numpy(), counts)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("classes", "is a binary model of ['other'] but config/train_config.py says binary"),
        ("tta", "one .onnx file alone, without --tta"),
        ("with a checkpoint", "one .onnx file alone"),
        ("not onnx", "onnxruntime cannot open it"),
        ("tile", "--tile 30 is not a multiple of the model's 4: use 32"),
    ],
)
def test_an_onnx_file_that_does_not_fit_is_one_line(
    kind: str, words: str, tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    model = save_onnx(tmp_path / "model.onnx", "binary", ["other"] if kind == "classes" else CLASSES)
    if kind == "not onnx":
        model.write_bytes(b"not a model")
    args = ["--data", str(folder), "--weights", str(model), "--device", "cpu"]
    extra = {"tta": ["--tta"], "with a checkpoint": ["--weights", str(model), "best.pt"], "tile": ["--tile", "30"]}
    assert evaluate.main([*args, *extra.get(kind, [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not global_config.LOG_DIR.exists() or not any(global_config.LOG_DIR.iterdir())  # no table written


def test_images_with_other_bands_than_the_onnx_file_are_refused_with_what_to_give_it(
    tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    """An exported model's bands are fixed: the line names the file and its bands, not DATASET_CONFIG, which a
    checkpoint's refusal still names."""
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    model = save_onnx(tmp_path / "model.onnx", "binary", CLASSES, bands=2)
    assert evaluate.main(["--data", str(folder), "--weights", str(model), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"error: image {folder / 'images' / 'tile_0.npy'} has 1 bands but the exported model {model} takes 2: "
        "give it images of 2 bands, or a model trained on 1-band images\n"
    )
    weights = save_checkpoint(global_config.WEIGHT_DIR / "run" / "best.pt", "binary", CLASSES, bands=2)
    assert evaluate.main(["--data", str(folder), "--weights", str(weights), "--device", "cpu"]) == 2
    assert "has 1 bands but DATASET_CONFIG.channels is 2: set it to 1" in capsys.readouterr().err
    assert not global_config.LOG_DIR.exists() or not any(global_config.LOG_DIR.iterdir())  # no table written


@pytest.mark.slow
def test_a_trained_model_scores_the_same_as_checkpoint_and_as_onnx(
    tmp_path: Path, global_config: GlobalConfig, shared_run, capsys: pytest.CaptureFixture
) -> None:
    """Tiled, both paths blend MONAI's Gaussian windows (utils/onnx_inference.py) and onnxruntime's logits are torch's
    within 1e-4 (export.py's check): a label could differ only where |logit| < 1e-4, so every figure agrees within
    1e-6, the precision of the CSV files. Whole images: the checkpoint's batches are padded with zeros to a common
    size, the ONNX path pads each image alone by reflection (as predict.py): the figures move by the edge pixels."""
    result, _ = shared_run("pytorch")
    weights = result.weight_dir / "best.pt"
    model = tmp_path / "best.onnx"
    assert export.main(["--weights", str(weights), "-o", str(model)]) == 0
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    for extra in (["--tile", "16", "--no-compare", "--name", "tiled"], ["--name", "whole"]):
        for source in (weights, model):
            assert evaluate.main(["--data", str(folder), "--weights", str(source), "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    differences = {}
    for name in ("tiled", "whole"):
        ours = evaluated(global_config, result.run_name, name)
        theirs = evaluated(global_config, result.run_name, f"{name}_onnx")
        assert {table: frame.shape for table, frame in ours.items()} == {t: f.shape for t, f in theirs.items()}
        numbers = [(ours[t].select_dtypes("number"), theirs[t]) for t in ("per_image", "summary")]
        differences[name] = max(float((mine - other[mine.columns]).abs().max().max()) for mine, other in numbers)
    print(f"max |checkpoint - onnx| over every figure: {differences}")
    assert differences["tiled"] <= 1e-6
    assert differences["whole"] < 0.05
