"""Cross-validation: folds that partition the data (whole groups, balanced classes), a run per fold, its scores."""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import train
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from config.schema import validate_config
from config.serialize import ConfigError
from training import data
from training.checkpoint import CheckpointError
from training.folds import CrossValidation, cross_validate
from utils.data.folder import SegmentationFolder
from utils.data.kfold import assign_folds
from utils.data.synthetic import SyntheticShapes


def fold_indices(config: dict, folds: int) -> list[set[int]]:
    """The validation samples of each fold, as split_dataset gives them to the runs."""
    config = validate_config({**config, "FOLDS": folds})
    return [set(data.split_dataset({**config, "FOLD": fold})[1].indices) for fold in range(folds)]


def test_the_validation_folds_are_disjoint_and_cover_the_data(tiny_config: dict) -> None:
    folds = fold_indices(tiny_config, 4)
    assert set().union(*folds) == set(range(tiny_config["DATASET_CONFIG"]["n_samples"]))
    assert sum(len(fold) for fold in folds) == tiny_config["DATASET_CONFIG"]["n_samples"]  # no sample twice
    assert sorted(len(fold) for fold in folds) == [10, 10, 10, 10]
    assert fold_indices(tiny_config, 4) == folds  # seeded: the same folds in every process
    assert fold_indices({**tiny_config, "SEED": 1}, 4) != folds


def test_groups_stay_whole_and_rare_classes_spread_over_the_folds() -> None:
    rng = np.random.default_rng(0)
    groups = [f"scene{rng.integers(0, 23)}" for _ in range(120)]
    presence = np.zeros((120, 3), dtype=bool)
    presence[:, 0] = True  # background everywhere
    scenes = sorted(set(groups))
    for scene in scenes[:5]:  # a rare class in 5 scenes only: one a fold
        presence[[i for i, g in enumerate(groups) if g == scene], 2] = True
    presence[:, 1] = rng.random(120) < 0.4
    folds = assign_folds(presence, groups, 5, seed=3)
    for scene in scenes:
        assert len({folds[i] for i, g in enumerate(groups) if g == scene}) == 1, scene  # never split
    rare_scenes = [{groups[i] for i in np.flatnonzero((folds == fold) & presence[:, 2])} for fold in range(5)]
    assert [len(found) for found in rare_scenes] == [1] * 5  # a random deal of 23 scenes would rarely manage that
    sizes = np.bincount(folds, minlength=5)
    assert sizes.min() > 0 and sizes.max() - sizes.min() <= max(np.bincount(np.unique(groups, return_inverse=True)[1]))
    common = np.array([presence[folds == fold, 1].sum() for fold in range(5)])
    assert common.max() - common.min() <= 0.25 * common.mean()
    with pytest.raises(ValueError, match=r"FOLDS=5 needs at least 5 groups \(VAL_GROUPS\); the data has 3"):
        assign_folds(presence[:3], ["a", "b", "c"], 5, seed=0)


def scene_tiles(root: Path, foreground_rows: list[int], tiles: int) -> dict[str, Any]:
    """``tiles`` 8x8 tiles of each scene, ``scene<s>_<t>.png`` in root/images and root/masks, whose masks have
    ``foreground_rows[s]`` rows of foreground on the left; returns the config keys that read them grouped by scene."""
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for scene, rows in enumerate(foreground_rows):
        pixels = np.zeros((8, 8), dtype=np.uint8)
        pixels[:rows, :4] = 255
        for tile in range(tiles):
            for sub in ("images", "masks"):
                Image.fromarray(pixels).save(root / sub / f"scene{scene}_{tile}.png")
    return {"DATASET": SegmentationFolder, "DATASET_CONFIG": {"root": str(root)}, "VAL_GROUPS": r"^(scene\d)_"}


def test_val_groups_give_folds_of_whole_scenes(tmp_path: Path, tiny_config: dict) -> None:
    config = {**tiny_config, **scene_tiles(tmp_path, foreground_rows=[1, 2, 3, 4], tiles=3)}
    stems = SegmentationFolder(tmp_path).stems()
    folds = fold_indices(config, 2)
    assert [sorted({stems[i][:6] for i in fold}) for fold in folds] in (
        [["scene0", "scene3"], ["scene1", "scene2"]],
        [["scene0", "scene1"], ["scene2", "scene3"]],
        [["scene0", "scene2"], ["scene1", "scene3"]],
        [["scene1", "scene2"], ["scene0", "scene3"]],
        [["scene2", "scene3"], ["scene0", "scene1"]],
        [["scene1", "scene3"], ["scene0", "scene2"]],
    )
    assert sorted(len(fold) for fold in folds) == [6, 6]
    with pytest.raises(ConfigError, match=r"FOLDS=5 needs at least 5 groups \(VAL_GROUPS\); the data has 4"):
        fold_indices(config, 5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"FOLDS": 3, "VAL_DATASET": SyntheticShapes},
            "FOLDS splits DATASET into folds, so a VAL_DATASET has no place",
        ),
        ({"FOLDS": 3, "FOLD": 3}, r"FOLD=3 but FOLDS=3: folds are 0\.\.2"),
        ({"FOLD": 0}, "FOLD is set but FOLDS is None"),
        ({"FOLDS": 1}, "FOLDS: must be >= 2"),
        ({"FOLDS": 2, "FOLD": -1}, "FOLD: must be >= 0"),
    ],
)
def test_fold_settings_that_cannot_work_are_refused(tiny_config: dict, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({**tiny_config, **changes})


def test_a_single_run_needs_its_fold(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match="FOLDS=3 needs FOLD, the fold to validate on; train.py --folds trains each"):
        data.split_dataset(validate_config({**tiny_config, "FOLDS": 3}))


def test_three_folds_each_scored_on_the_images_it_did_not_train_on(
    tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # 31 samples: folds of 11, 10 and 10, so that a mean over images is not the mean of the folds' means
    config = {**tiny_config, "DATASET_CONFIG": {"n_samples": 31, "size": 32, "seed": 0}, "FOLDS": 3}
    caplog.set_level("INFO", logger="project")
    result = cross_validate(config, global_config, ROUTINES[0])
    folder = result.run_dir
    assert folder == global_config.LOG_DIR / result.run_name
    assert result.run_name.startswith(f"unet_shapes_{ROUTINES[0]}_cv3_")

    splits = pd.read_csv(folder / "folds.csv")
    assert splits["image"].tolist() == list(range(31)) and sorted(splits["fold"].value_counts()) == [10, 10, 11]
    rows = pd.read_csv(global_config.LOG_DIR / "experiments.csv").sort_values("fold")
    assert rows["cv_name"].tolist() == [result.run_name] * 3 and rows["fold"].tolist() == [0, 1, 2]
    assert rows["status"].tolist() == ["completed"] * 3
    runs = json.loads((folder / "cv.json").read_text())["runs"]
    assert runs == {str(row.fold): row.run_name for row in rows.itertuples()}

    summary = pd.read_csv(folder / "cv_summary.csv").set_index(["checkpoint", "metric"])
    out_of_fold = pd.read_csv(folder / "out_of_fold.csv")
    last = out_of_fold[out_of_fold["checkpoint"] == "last.pt"]
    assert sorted(last["image"]) == list(range(31))  # every image once, scored by the fold that held it out
    assert last.set_index("image")["fold"].sort_index().equals(splits.set_index("image")["fold"])
    for row in rows.itertuples():
        assert json.loads((Path(row.run_dir) / "config.json").read_text())["config"]["FOLD"] == row.fold
        history = pd.read_csv(Path(row.run_dir) / "history.csv")
        for metric in ("val_dice", "val_dice_pooled", "val_iou", "val_iou_pooled"):  # last.pt is the last epoch
            assert summary.loc[("last.pt", metric), f"fold_{row.fold}"] == pytest.approx(
                history[metric].iloc[-1], abs=1e-6
            )
            assert summary.loc[("best.pt", metric), f"fold_{row.fold}"] == pytest.approx(
                history.set_index("epoch").loc[row.best_epoch, metric], abs=1e-6
            )
    dice = summary.loc[("last.pt", "val_dice")]
    per_fold = dice[["fold_0", "fold_1", "fold_2"]].astype(float)
    assert dice["mean"] == pytest.approx(per_fold.mean(), abs=1e-6)
    assert dice["std"] == pytest.approx(per_fold.std(ddof=1), abs=1e-6)
    assert dice["out_of_fold"] == pytest.approx(last["dice"].mean(), abs=1e-6)  # over images, not folds
    assert abs(dice["out_of_fold"] - dice["mean"]) > 1e-6
    pooled = summary.loc[("last.pt", "val_dice_pooled")]
    folds_pooled = pooled[["fold_0", "fold_1", "fold_2"]].astype(float)  # pixels of all folds: between their values
    assert folds_pooled.min() < pooled["out_of_fold"] < folds_pooled.max()
    assert bool(summary.loc[("best.pt", "val_dice"), "optimistic"]) and not dice["optimistic"]
    headline = f"cross-validation {result.run_name}, last.pt: val_dice {dice['mean']:.4f} ± {dice['std']:.4f}"
    assert headline in caplog.text and "best.pt (optimistic: chosen on these images)" in caplog.text

    with pytest.raises(ConfigError, match=r"has run\(s\) for fold\(s\) 0, 1, 2 already: continue it with --resume"):
        cross_validate(config, global_config, ROUTINES[0])
    before = (folder / "cv_summary.csv").read_text()
    again = cross_validate(config, global_config, ROUTINES[0], resume=result.run_name)  # nothing left to train
    assert again.run_name == result.run_name and (folder / "cv_summary.csv").read_text() == before
    assert len(pd.read_csv(global_config.LOG_DIR / "experiments.csv")) == 3
    with pytest.raises(CheckpointError, match="the config differs from the run's in OPTIMIZER_CONFIG.lr"):
        cross_validate({**config, "OPTIMIZER_CONFIG": {"lr": 0.1}}, global_config, ROUTINES[0], resume=result.run_name)


def test_a_fold_another_process_trains_is_refused_naming_that_process(
    tiny_config: dict, global_config: GlobalConfig
) -> None:
    cv = CrossValidation("unet_cv", tiny_config, {}, global_config)
    cv.folder.mkdir(parents=True)
    held = cv.claim(0)
    assert (cv.folder / ".fold_0.lock.pid").read_text(encoding="utf-8") == f"{os.getpid()}\n"
    with pytest.raises(ConfigError) as refused:
        cv.claim(0)
    assert str(refused.value) == (
        f"fold 0 of cross-validation unet_cv is being trained by another process (pid {os.getpid()}); wait for it "
        "to end, or stop it"
    )
    cv.claim(1).release()  # the other folds stay free
    held.release()
    cv.claim(0).release()  # and this one is free again once its process lets it go


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "VAL_DATASET=utils.data.synthetic.SyntheticShapes"], "FOLDS splits DATASET into folds, so a"),
        (["--set", "DATASET_CONFIG.n_samples=4"], "FOLDS=5 needs at least 5 samples; the data has 4"),
        (["--resume", "nope"], "--resume nope: no cross-validation of that name (this config's is unet_shapes_"),
    ],
)
def test_train_py_refuses_a_cross_validation_that_cannot_be_in_one_line_and_writes_nothing(
    global_config: GlobalConfig, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert train.main(["--folds", "5", "--set", "DEVICE='cpu'", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not global_config.LOG_DIR.exists() and not global_config.WEIGHT_DIR.exists()


def test_a_fold_without_the_checkpoint_metrics_class_is_refused_before_any_fold_trains(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    config = {
        **tiny_config,
        **scene_tiles(tmp_path, foreground_rows=[0, 4, 4], tiles=2),  # scene0: no foreground anywhere
        "FOLDS": 3,
        "DATA_LOADER_CONFIG": {"batch_size": 2, "num_workers": 0},
    }
    with pytest.raises(
        ConfigError, match=r"CHECKPOINT_METRIC val_dice is never defined on fold \d: .* no pixel of fore"
    ):
        cross_validate(config, global_config, ROUTINES[0])
    assert not global_config.LOG_DIR.exists()  # no fold trained, nothing written
    result = cross_validate({**config, "CHECKPOINT_METRIC": "val_loss"}, global_config, ROUTINES[0])
    assert result.status == "completed"
