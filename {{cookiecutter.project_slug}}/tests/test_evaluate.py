"""evaluate.py: a checkpoint on a labelled folder gives per-image, summary and confusion tables; on the run's own
validation folder it reproduces history.csv's best epoch; tiled evaluation says how far it moves; and the test of
a trained model (tests/test_trained_model.py) checks QUALITY_FLOOR."""

import copy
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from checkpoints import save_checkpoint
from PIL import Image
from test_metric_sums import empty_tiles_example
from test_trained_model import quality_shortfalls

import evaluate
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.serialize import load_file_module
from config.train_config import TRAIN_CONFIG
from utils import evaluation
from utils.data.folder import SegmentationFolder

SIZES = [(32, 32), (40, 24), (20, 36), (32, 28), (24, 24)]  # mixed, some not divisible by the model's 4


def labelled_folder(root: Path, bands: int, classes: int, seed: int = 0) -> Path:
    """Images (.npy, ``bands`` bands, channel-last) and masks (PNG: 0/255 for 2 classes, else indices 0..classes-1)
    of SIZES; the masks follow band 0, so a model can learn them."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for index, (height, width) in enumerate(SIZES):
        image = rng.random((height, width, bands), dtype=np.float32)
        np.save(root / "images" / f"tile_{index}.npy", image)
        labels = np.minimum((image[..., 0] * classes).astype(np.uint8), classes - 1)
        Image.fromarray(labels * 255 if classes == 2 else labels).save(root / "masks" / f"tile_{index}.png")
    return root


def evaluated(global_config: GlobalConfig, run: str, name: str) -> dict[str, pd.DataFrame]:
    """The tables evaluate.py wrote for ``run`` under ``name``."""
    folder = global_config.LOG_DIR / run / "evaluation" / name
    return {path.stem: pd.read_csv(path) for path in folder.glob("*.csv")}


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_the_validation_folder_reproduces_the_best_epoch_of_history(
    task: str, tiny_config: dict, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    config = copy.deepcopy(tiny_config)
    if task == "multiclass":
        config.update(
            copy.deepcopy(load_file_module(Path(__file__).parents[1] / "configs" / "multiclass.py").TRAIN_CONFIG)
        )
        config["MODEL_CONFIG"].update(base_channels=4, depth=2)
        config["DATASET_CONFIG"].update(n_samples=24, size=32)
    bands, classes = config["MODEL_CONFIG"]["in_channels"], config["CLASSES"]
    folder = labelled_folder(global_config.DATA_DIR / "val", bands, max(len(classes), 2))
    config.update(VAL_DATASET=SegmentationFolder, VAL_DATASET_CONFIG={"root": str(folder), "channels": bands})
    config.update(DEVICE="cpu", EPOCHS=2, DATA_LOADER_CONFIG={"batch_size": 2, "num_workers": 0})
    result = importlib.import_module(f"training.{ROUTINES[0]}_training").train(config, global_config)
    best_epoch = torch.load(result.weight_dir / "best.pt", weights_only=True)["epoch"]
    best = pd.read_csv(result.run_dir / "history.csv").set_index("epoch").loc[best_epoch]

    assert evaluate.main(["--data", str(folder), "--device", "cpu"]) == 0  # the latest run's best.pt
    tables = evaluated(global_config, result.run_name, "val")
    summary = tables["summary"].set_index("class")
    assert abs(summary.loc["mean", "dice"] - best["val_dice"]) < 1e-6
    assert abs(summary.loc["mean", "iou"] - best["val_iou"]) < 1e-6
    if task == "multiclass":
        for name in classes:
            assert abs(summary.loc[name, "dice"] - best[f"val_dice_{name}"]) < 1e-6, name
    per_image = tables["per_image"]
    assert per_image["image"].tolist() == [f"tile_{index}.npy" for index in range(len(SIZES))]
    assert abs(per_image["dice"].mean() - best["val_dice"]) < 1e-6
    confusion = tables["confusion"].set_index("truth")
    assert confusion.to_numpy().sum() == sum(height * width for height, width in SIZES)  # every pixel, no padding
    names = ["background", *classes] if task == "binary" else classes
    assert list(confusion.index) == list(confusion.columns) == names
    assert (global_config.LOG_DIR / result.run_name / "evaluation" / "val" / "confusion.png").read_bytes()[
        :4
    ] == b"\x89PNG"
    assert "tables in" in capsys.readouterr().out

    assert evaluate.main(["--data", str(folder), "--device", "cpu", "--tile", "16", "--name", "tiled"]) == 0
    out = capsys.readouterr().out
    assert "tiled by 16 minus whole images" in out
    tiled = evaluated(global_config, result.run_name, "tiled")["summary"].set_index("class")
    shift = float(out.split("dice ", 1)[1].split("minus whole images: ", 1)[1].split()[0])
    assert abs(tiled.loc["mean", "dice"] - summary.loc["mean", "dice"] - shift) < 2e-6
    # --no-compare: the tiled tables alone (a scene too large for a whole-image pass)
    args = ["--data", str(folder), "--device", "cpu", "--tile", "16", "--name", "alone", "--no-compare"]
    assert evaluate.main(args) == 0
    assert "minus whole images" not in capsys.readouterr().out
    alone = evaluated(global_config, result.run_name, "alone")["summary"].set_index("class")
    assert alone.loc["mean", "dice"] == pytest.approx(tiled.loc["mean", "dice"], abs=1e-9)


def test_empty_images_are_nan_in_the_tables_and_the_means_skip_them(tmp_path: Path) -> None:
    """The issue's 10 tiles (one false pixel on an empty one): per_image.csv says nan for the 8 tiles with nothing to
    find and nothing found; summary.csv's mean is over the 2 others (count 2) beside the pooled value of all pixels."""
    scores = evaluation.Scores("binary", ["shape"])
    tiles = empty_tiles_example(false_positive=True)
    for start in (0, 4, 8):  # batches of 4, 4 and 2
        batch = tiles[start : start + 4]
        scores.add(torch.cat([logits for logits, _ in batch]), torch.cat([target for _, target in batch]))
    evaluation.write_tables(tmp_path, evaluation.tables(scores, [f"t{index}" for index in range(10)], ["shape"]))
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    assert per_image["dice"].isna().sum() == 8 and per_image["dice"].iloc[1] == 0.0
    assert ",nan," in (tmp_path / "per_image.csv").read_text()  # written, not an empty cell
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("class")
    assert summary.loc["shape", "dice"] == pytest.approx(36 / 98 / 2, abs=1e-6)  # the old rule: 0.837
    assert summary.loc["shape", "dice_count"] == 2 and summary.loc["mean", "dice_count"] == 1  # images; classes
    assert summary.loc["mean", "dice_pooled"] == pytest.approx(36 / 99, abs=1e-6)
    assert list(summary.columns) == ["dice", "dice_count", "dice_pooled", "iou", "iou_count", "iou_pooled"]


def test_multilabel_has_per_label_scores_and_no_confusion(
    tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    weights = save_checkpoint(global_config.WEIGHT_DIR / "run_a" / "best.pt", "multilabel", ["road", "water"])
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(
            tmp_path / "set" / "images" / f"{index}.png"
        )
        np.save(tmp_path / "set" / "masks" / f"{index}.npy", (rng.random((2, 24, 20)) > 0.5).astype(np.uint8))
    assert evaluate.main(["--data", str(tmp_path / "set"), "--weights", str(weights), "--device", "cpu"]) == 0
    capsys.readouterr()
    tables = evaluated(global_config, "run_a", "set")
    assert set(tables) == {"per_image", "summary"}
    assert {"dice_road", "dice_water", "iou_road", "iou_water"} <= set(tables["per_image"].columns)
    assert tables["summary"]["class"].tolist() == ["road", "water", "mean"]
    assert tables["summary"][["dice", "iou", "dice_pooled", "iou_pooled"]].to_numpy().max() <= 1.0


def test_an_old_checkpoint_evaluates_as_binary(
    tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    save_checkpoint(global_config.WEIGHT_DIR / "old_run" / "best.pt", old=True)
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    assert evaluate.main(["--data", str(folder), "--weights", "old_run", "--device", "cpu", "--name", "x"]) == 0
    capsys.readouterr()
    summary = evaluated(global_config, "old_run", "x")["summary"]
    assert summary["class"].tolist() == ["foreground", "mean"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--data", "{tmp}/nothere"), "dataset folder not found"),
        (("--data", "{tmp}/set", "--tile", "30"), "--tile 30 is not a multiple of the model's 4: use 32"),
        (("--data", "{tmp}/bad"), "holds value 7"),
        (("--data", "{tmp}/set", "--weights", "no_run"), "--weights no_run"),
    ],
)
def test_mistakes_are_one_line(
    args: tuple[str, ...], words: str, tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    save_checkpoint(global_config.WEIGHT_DIR / "run_b" / "best.pt", "multiclass", ["a", "b", "c"])
    labelled_folder(tmp_path / "set", bands=1, classes=3)
    bad = labelled_folder(tmp_path / "bad", bands=1, classes=3)
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(bad / "masks" / "tile_0.png")
    assert evaluate.main([*(arg.replace("{tmp}", str(tmp_path)) for arg in args), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not (global_config.LOG_DIR / "run_b").exists()


def test_the_trained_model_test_checks_the_floor(
    tiny_config: dict, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    config = {**tiny_config, "TEST_FOLDER": None, "QUALITY_FLOOR": {"dice": 0.5}}
    with pytest.raises(pytest.skip.Exception, match="TEST_FOLDER is not set"):
        quality_shortfalls(config, global_config)
    config["TEST_FOLDER"] = str(labelled_folder(global_config.DATA_DIR / "test", bands=1, classes=2))
    with pytest.raises(pytest.skip.Exception, match="no run with a best.pt"):
        quality_shortfalls(config, global_config)
    with pytest.raises(pytest.skip.Exception, match="QUALITY_FLOOR is not set"):
        quality_shortfalls({**config, "QUALITY_FLOOR": {}}, global_config)
    save_checkpoint(global_config.WEIGHT_DIR / "run_c" / "best.pt")
    assert not quality_shortfalls({**config, "QUALITY_FLOOR": {"dice": 0.0, "iou_foreground": 0.0}}, global_config)
    (shortfall,) = quality_shortfalls({**config, "QUALITY_FLOOR": {"dice": 1.01}}, global_config)
    assert shortfall.startswith("dice ") and "< 1.01" in shortfall
    with pytest.raises(AssertionError, match="QUALITY_FLOOR names"):
        quality_shortfalls({**config, "QUALITY_FLOOR": {"accuracy": 0.5}}, global_config)
    capsys.readouterr()


def test_without_data_it_takes_test_folder_or_says_what_to_set(
    tmp_path: Path, global_config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(TRAIN_CONFIG, "TEST_FOLDER", None)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--device", "cpu"])
    assert exit_info.value.code == 2 and "set TEST_FOLDER" in capsys.readouterr().err
    save_checkpoint(global_config.WEIGHT_DIR / "run_c" / "best.pt", "binary", ["shape"])
    monkeypatch.setitem(TRAIN_CONFIG, "TEST_FOLDER", str(tmp_path / "test_set"))
    assert evaluate.main(["--device", "cpu"]) == 2
    assert "test_set" in capsys.readouterr().err  # it went on with TEST_FOLDER
