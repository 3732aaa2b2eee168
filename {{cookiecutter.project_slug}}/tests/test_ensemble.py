"""Ensembles and test-time augmentation (utils/ensemble.py): TTA's transforms inverted exactly, an ensemble of one is
the model, the least common divisor, one-line refusals, cross-validations by name; on tiled scenes of trained runs
(slow), the ensemble is the mean of its members and TTA the mean of the transformed scenes."""

import copy
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from checkpoints import save_checkpoint
from PIL import Image
from test_evaluate import labelled_folder
from torch import nn

import evaluate
import predict
from config.overrides import ROUTINES
from config.paths import GlobalConfig, get_global_config
from config.train_config import TRAIN_CONFIG
from training.checkpoint import CheckpointError
from utils.data.synthetic import SyntheticShapes
from utils.ensemble import Ensemble, cv_checkpoints, load_ensemble, transforms
from utils.metrics import probabilities
from utils.prediction import Predictor, load_predictor
from utils.tiling import sliding_window

CPU = torch.device("cpu")
STATS = {"method": "meanstd", "mean": [0.4], "std": [0.2]}


class Conv(nn.Module):
    """One convolution claiming a divisor; 1x1 commutes with every flip and quarter turn, 3x3 (random) with none."""

    def __init__(self, kernel: int, divisor: int = 4, classes: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.divisor = nn.Conv2d(1, classes, kernel, padding=kernel // 2), divisor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] of images [N, 1, H, W]."""
        return self.conv(images)


def member(model: nn.Module, task: str = "binary", stats: dict | None = None, **config: object) -> Predictor:
    """A Predictor of ``model`` with the config keys predict and evaluate read."""
    classes = ["a", "b", "c"] if task == "multiclass" else ["a"]
    settings = {"TASK": task, "CLASSES": classes, "MODEL_CONFIG": {"in_channels": 1}, **config}
    return Predictor(model.eval(), settings, stats, "run")


def test_tta_inverts_each_transform_exactly() -> None:
    image = torch.rand(2, 1, 12, 12)
    views = transforms(True, square=True)
    seen = {
        tuple(torch.rot90(image.flip(-1) if flip else image, turn, (-2, -1)).flatten().tolist()) for turn, flip in views
    }
    assert (
        len(views) == len(seen) == 8
        and len(transforms(True, square=False)) == 4
        and transforms(False, True) == [(0, False)]
    )
    pointwise = Conv(1)  # equivariant: every view, inverted, gives back the model's own probabilities
    for shape in ((2, 1, 12, 12), (1, 1, 8, 20)):
        image = torch.randn(shape)
        torch.testing.assert_close(
            torch.sigmoid(Ensemble([member(pointwise)], tta=True)(image)),
            torch.sigmoid(pointwise(image)),
            rtol=0,
            atol=2e-6,
        )
    # A model that sees its neighbours: the mean of the 4 flips' predictions, each flipped back (not square: no turns)
    conv = Conv(3)
    image = torch.randn(1, 1, 8, 20)
    flipped = [(), (-1,), (-2,), (-2, -1)]
    expected = sum(torch.sigmoid(conv(image.flip(dims))).flip(dims) for dims in flipped) / 4
    torch.testing.assert_close(torch.sigmoid(Ensemble([member(conv)], tta=True)(image)), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_an_ensemble_of_one_is_the_model_with_statistics_and_no_data(task: str) -> None:
    one = member(Conv(3, classes=3 if task == "multiclass" else 1), task, STATS, NODATA=0.25)
    image = torch.rand(1, 38, 50)  # padded to 40 x 52 by reflection: NaN reflected too, then zeroed
    image[0, 4:10, 4:10], image[0, 30, 7] = 0.25, float("nan")  # NODATA and NaN: zeroed after normalising
    expected = probabilities(sliding_window(one.model, one.prepare(image), None), task)
    raw = sliding_window(Ensemble([one]), image[None], None)  # the member finds its no-data pixels itself
    torch.testing.assert_close(probabilities(raw, task), expected, rtol=0, atol=3e-6)
    ensemble = Predictor(Ensemble([one]), one.config, None, "run", fill=float("nan"))  # as load_ensemble makes it
    prepared = sliding_window(ensemble.model, ensemble.prepare(image), None)  # no-data pixels NaN
    torch.testing.assert_close(probabilities(prepared, task), expected, rtol=0, atol=3e-6)


def test_the_divisor_is_the_least_common_multiple() -> None:
    assert Ensemble([member(Conv(1, 4)), member(Conv(1, 6))]).divisor == 12
    assert Ensemble([member(Conv(1, 8)), member(Conv(1, 4))]).divisor == 8


def cross_validation(global_config: GlobalConfig, name: str, runs: dict[str, str], folds: int = 3) -> None:
    """LOG_DIR/<name>/cv.json as the cross-validation writes it."""
    (global_config.LOG_DIR / name).mkdir(parents=True)
    record = {"cv_name": name, "folds": folds, "runs": runs}
    (global_config.LOG_DIR / name / "cv.json").write_text(json.dumps(record), encoding="utf-8")


def test_a_cross_validation_is_its_folds_last_checkpoints_or_one_line(
    global_config: GlobalConfig, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for fold in range(3):
        save_checkpoint(global_config.WEIGHT_DIR / f"fold{fold}" / "last.pt", stats=STATS)
    cross_validation(global_config, "cv", {"0": "fold0", "1": "fold1", "2": "fold2"})
    assert cv_checkpoints("cv", global_config) == [
        global_config.WEIGHT_DIR / f"fold{fold}" / "last.pt" for fold in range(3)
    ]
    assert cv_checkpoints("fold0", global_config) is None  # not a cross-validation: a run name, for find_checkpoint
    predictor, checkpoints = load_ensemble(["cv"], global_config, CPU)
    assert predictor.run_name == "cv" and len(checkpoints) == 3 and predictor.model.label == ""
    save_checkpoint(global_config.WEIGHT_DIR / "other" / "best.pt", stats=STATS)
    predictor, _ = load_ensemble(["cv", "other"], global_config, CPU, tta=True)
    assert predictor.run_name == "fold0" and predictor.model.label == "ensemble4_tta"
    with pytest.raises(CheckpointError, match=r"--weights names .*fold0/last.pt twice: once is enough"):
        load_ensemble(["cv", str(checkpoints[0])], global_config, CPU)
    cross_validation(global_config, "half", {"0": "fold0", "2": "nowhere"})
    png = tmp_path / "in" / "a.png"
    png.parent.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert predict.main(["-i", str(png), "-o", str(tmp_path / "out"), "--weights", "half", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        "error: --weights half: fold 1 of the cross-validation is not started; "
        "finish it with python train.py --folds 3 --resume half and the options it was started with\n"
    )

    (global_config.LOG_DIR / "half" / "cv.json").write_text(json.dumps({"folds": 2, "runs": {"0": "a", "1": "b"}}))
    save_checkpoint(global_config.WEIGHT_DIR / "a" / "last.pt")
    save_checkpoint(global_config.WEIGHT_DIR / "b" / "best.pt")  # best.pt only: not the fold's unselected model
    with pytest.raises(CheckpointError, match=r"^half: fold 1 of the cross-validation \(run b\) has no last.pt;"):
        cv_checkpoints("half", global_config)
    (global_config.LOG_DIR / "half" / "cv.json").write_text("{")
    with pytest.raises(CheckpointError, match="is not a cross-validation's record"):
        cv_checkpoints("half", global_config)


def test_an_evaluated_ensemble_of_one_model_twice_scores_as_the_model(
    tmp_path: Path, global_config: GlobalConfig, capsys: pytest.CaptureFixture
) -> None:
    """Raw samples (NaN where no data, batches padded with NaN) normalised by each member: the model's figures."""
    save_checkpoint(global_config.WEIGHT_DIR / "run" / "best.pt", stats=STATS, NODATA=0.25)
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    for index, (top, left) in enumerate(((2, 3), (10, 4), (0, 12))):
        image = np.load(folder / "images" / f"tile_{index}.npy")
        image[top : top + 8, left : left + 6], image[1, 1] = np.nan, 0.25  # NaN and NODATA, masked in the targets
        np.save(folder / "images" / f"tile_{index}.npy", image)
    common = ["--data", str(folder), "--device", "cpu", "--name", "x"]
    assert evaluate.main([*common, "--weights", "run"]) == 0
    (global_config.WEIGHT_DIR / "copy").mkdir()  # the same model in another file (one file twice is refused)
    shutil.copy(global_config.WEIGHT_DIR / "run" / "best.pt", global_config.WEIGHT_DIR / "copy" / "best.pt")
    assert evaluate.main([*common, "--weights", "run", "copy"]) == 0
    names = [str(global_config.WEIGHT_DIR / run / "best.pt") for run in ("run", "copy")]
    assert "with " + " + ".join(names) in capsys.readouterr().out
    model, ensemble = (global_config.LOG_DIR / "run" / "evaluation" / name for name in ("x", "x_ensemble2"))
    for table in ("per_image", "summary", "confusion"):
        expected, got = pd.read_csv(model / f"{table}.csv"), pd.read_csv(ensemble / f"{table}.csv")
        pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-6)


@pytest.mark.parametrize(
    ("second", "words"),
    [
        ({"task": "multiclass", "classes": ["a", "b", "c"]}, "multiclass ['a', 'b', 'c'] with 1 band(s) but"),
        ({"classes": ["other"]}, "binary ['other'] with 1 band(s) but"),
        ({"bands": 3}, "binary ['foreground'] with 3 band(s) but"),
    ],
)
def test_checkpoints_of_other_tasks_classes_or_bands_are_refused(
    second: dict, words: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, other = save_checkpoint(tmp_path / "a.pt"), save_checkpoint(tmp_path / "b.pt", **second)
    folder = labelled_folder(tmp_path / "set", bands=1, classes=2)
    args = ["--weights", str(first), str(other), "--device", "cpu"]
    assert predict.main(["-i", str(folder / "images"), "-o", str(tmp_path / "out"), *args]) == 2
    assert evaluate.main(["--data", str(folder), *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err
        == [f"error: --weights: {other} is {words} {first} binary ['foreground'] with 1 band(s): not one ensemble"] * 2
    )
    assert not (tmp_path / "out").exists()


@pytest.fixture(name="folds", scope="module")
def trained_folds(tmp_path_factory: pytest.TempPathFactory) -> tuple[GlobalConfig, list[Path]]:
    """Three tiny runs (seeds 0, 1, 2) recorded as the cross-validation ``cv3``, in their own folders."""
    root = tmp_path_factory.mktemp("folds")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
            monkeypatch.setenv(name, str(root / name.split("_", maxsplit=1)[0].lower()))
        folders = get_global_config()
    config = copy.deepcopy(TRAIN_CONFIG)
    config["MODEL_CONFIG"].update(base_channels=4, depth=2)
    config.update(DATASET_CONFIG={"n_samples": 32, "size": 32, "seed": 0}, EPOCHS=4, DEVICE="cpu")
    config["DATA_LOADER_CONFIG"] = {"batch_size": 8, "num_workers": 0}
    train = importlib.import_module(f"training.{ROUTINES[0]}_training").train
    runs = [train({**config, "SEED": seed}, folders).run_name for seed in range(3)]
    cross_validation(folders, "cv3", {str(fold): run for fold, run in enumerate(runs)})
    return folders, [folders.WEIGHT_DIR / run / "last.pt" for run in runs]


def probability_map(args: list[str], output: Path) -> np.ndarray:
    """predict.py's ``<stem>_prob.tif`` of scene.png into ``output``."""
    assert predict.main([*args, "-o", str(output), "--probabilities", "--device", "cpu"]) == 0
    return tifffile.imread(output / "scene_prob.tif")


@pytest.mark.slow
def test_a_cross_validation_predicts_tiled_scenes_as_the_mean_of_its_folds(
    folds: tuple[GlobalConfig, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    global_config, checkpoints = folds
    monkeypatch.setenv("LOG_DIR", str(global_config.LOG_DIR))
    monkeypatch.setenv("WEIGHT_DIR", str(global_config.WEIGHT_DIR))
    scene = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96), dtype=np.uint8)).save(scene)
    tiles = ["-i", str(scene), "--tile", "32", "--overlap", "0"]  # each pixel in one tile: blending is exact
    ensemble = probability_map([*tiles, "--weights", "cv3"], tmp_path / "cv3")
    members = [probability_map([*tiles, "--weights", str(path)], tmp_path / path.parent.name) for path in checkpoints]
    np.testing.assert_allclose(ensemble, np.mean(members, axis=0), rtol=0, atol=2e-6)
    labels = np.array(Image.open(tmp_path / "cv3" / "scene.png"))
    np.testing.assert_array_equal(labels == 255, ensemble[0] > 0.5)


@pytest.mark.slow
def test_tta_on_square_tiles_is_the_mean_of_the_eight_transformed_scenes(
    folds: tuple[GlobalConfig, list[Path]], tmp_path: Path
) -> None:
    """With tiles on a grid (no overlap), a dihedral transform of the scene transforms each tile in place."""
    checkpoint = folds[1][0]
    scene = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96), dtype=np.uint8)).save(scene)
    args = ["-i", str(scene), "--weights", str(checkpoint), "--tile", "32", "--overlap", "0", "--tta"]
    averaged = probability_map(args, tmp_path / "tta")
    predictor = load_predictor(checkpoint, CPU)
    image = predictor.prepare(np.asarray(Image.open(scene), np.float32)[None] / 255)
    expected = torch.zeros(1, 1, 64, 96)
    for turns in range(4):
        for dims in ((), (-1,)):
            logits = sliding_window(predictor.model, torch.rot90(image.flip(dims), turns, (-2, -1)), 32, 0.0)
            expected += torch.sigmoid(logits).rot90(-turns, (-2, -1)).flip(dims) / 8
    np.testing.assert_allclose(averaged, expected[0].numpy(), rtol=0, atol=2e-6)
    single = probability_map(args[:-1], tmp_path / "single")
    assert np.abs(averaged - single).max() > 1e-3  # the model is not equivariant: TTA changed something


@pytest.mark.slow
def test_an_evaluated_cross_validation_writes_to_its_folder_what_predict_predicts(
    folds: tuple[GlobalConfig, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    global_config, _ = folds
    monkeypatch.setenv("LOG_DIR", str(global_config.LOG_DIR))
    monkeypatch.setenv("WEIGHT_DIR", str(global_config.WEIGHT_DIR))
    folder = tmp_path / "held"  # shapes like the training set's, none of them seen in training
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for index, (image, mask) in enumerate(SyntheticShapes(n_samples=4, size=32, seed=7)):
        Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).save(folder / "images" / f"{index}.png")
        Image.fromarray(mask[0].numpy().astype(np.uint8) * 255).save(folder / "masks" / f"{index}.png")
    assert evaluate.main(["--data", str(folder), "--weights", "cv3", "--tile", "16", "--device", "cpu"]) == 0
    assert "tiled by 16 minus whole images" in capsys.readouterr().out
    tables = global_config.LOG_DIR / "cv3" / "evaluation" / "held"
    assert sorted(path.name for path in tables.iterdir()) == [
        "confusion.csv",
        "confusion.png",
        "per_image.csv",
        "summary.csv",
    ]
    assert list(global_config.LOG_DIR.glob("*/evaluation/held*")) == [tables]  # no member's folder holds them
    # The whole-image pass of the tables and predict.py's masks: the same predicted pixels
    assert evaluate.main(["--data", str(folder), "--weights", "cv3", "--name", "whole", "--device", "cpu"]) == 0
    assert (
        predict.main(
            ["-i", str(folder / "images"), "-o", str(tmp_path / "masks"), "--weights", "cv3", "--device", "cpu"]
        )
        == 0
    )
    predicted = sum(int((np.array(Image.open(path)) == 255).sum()) for path in (tmp_path / "masks").glob("*.png"))
    confusion = pd.read_csv(global_config.LOG_DIR / "cv3" / "evaluation" / "whole" / "confusion.csv", index_col=0)
    assert int(confusion.iloc[:, 1].sum()) == predicted > 0  # the column of the class predicted
