"""Real data through a whole run: folders of mixed sizes, sizes the model does not divide, any number of bands,
multi-class masks, no-data pixels, scenes split by group, and a run that starts from another run's weights."""

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from config.overrides import ROUTINES
from config.paths import GlobalConfig
from training.checkpoint import load_checkpoint
from training.sanity_checks import SanityCheckError
from utils.data.folder import SegmentationFolder

TRAIN = importlib.import_module(f"training.{ROUTINES[0]}_training").train


def write_pairs(
    root: Path,
    sizes: list[tuple[int, int]],
    bands: int = 1,
    classes: int = 2,
    suffix: str = ".png",
    names: list[str] | None = None,
) -> Path:
    """Image/mask pairs of the given (H, W) in ``root``/images and /masks: a bright square per class, mask 0..K-1."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for index, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), dtype=np.uint8)
        for label in range(1, classes):
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            mask[top : top + height // 3, left : left + width // 3] = label
        image = (mask[..., None] * 60 + rng.integers(0, 40, (height, width, bands))).astype(np.uint8)
        name = names[index] if names else f"{index}"
        if suffix == ".png":
            Image.fromarray(image[..., 0] if bands == 1 else image).save(root / "images" / f"{name}.png")
        elif suffix == ".npy":
            np.save(root / "images" / f"{name}.npy", image.astype(np.float32) / 255)
        else:
            tifffile.imwrite(root / "images" / f"{name}.tif", np.moveaxis(image, -1, 0))
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def folder_config(config: dict, root: Path, **changes: object) -> dict:
    """``config`` training on the folder ``root`` for one epoch, with ``changes``."""
    config.update(DATASET=SegmentationFolder, DATASET_CONFIG={"root": str(root)}, EPOCHS=1, VAL_FRACTION=0.25)
    config["DATA_LOADER_CONFIG"] = {"batch_size": 4, "num_workers": 0}
    config.update(changes)
    return config


def history(result) -> pd.DataFrame:  # noqa: ANN001
    """The run's history.csv."""
    return pd.read_csv(result.run_dir / "history.csv")


def test_mixed_sizes_and_sizes_the_model_does_not_divide_train_whole(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    sizes = [(64, 64), (96, 80), (100, 100), (6, 50)] * 2  # 6 rows: fewer than a depth-3 U-Net's multiple, 8
    config = folder_config(
        tiny_config, write_pairs(tmp_path / "set", sizes), MODEL_CONFIG={**tiny_config["MODEL_CONFIG"], "depth": 3}
    )
    result = TRAIN(config, global_config)
    assert result.status == "completed" and np.isfinite(history(result)["val_dice"]).all()


def test_rgba_images_train_a_three_band_model_and_a_band_mismatch_is_one_line(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, bands=4)
    model = {**tiny_config["MODEL_CONFIG"], "in_channels": 3}
    result = TRAIN(folder_config(tiny_config, root, MODEL_CONFIG=model), global_config)  # alpha is not a band
    assert result.status == "completed"
    model["in_channels"] = 5
    with pytest.raises(SanityCheckError, match=r"'bands' failed: the images have 3 band\(s\).*in_channels is 5"):
        TRAIN(folder_config(tiny_config, root, MODEL_CONFIG=model), global_config)


def test_a_three_class_folder_trains_with_metrics_per_class(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, classes=3)
    model = {**tiny_config["MODEL_CONFIG"], "out_channels": 3}
    config = folder_config(
        tiny_config,
        root,
        TASK="multiclass",
        CLASSES=["background", "interior", "boundary"],
        MODEL_CONFIG=model,
        CHECKPOINT_METRIC="val_dice_boundary",
    )
    result = TRAIN(config, global_config)
    row = history(result).iloc[-1]
    per_class = [row[f"val_dice_{name}"] for name in config["CLASSES"]]
    assert row["val_dice"] == pytest.approx(np.mean(per_class), abs=1e-6)
    assert load_checkpoint(result.weight_dir / "best.pt")["best"]["metric"] == "val_dice_boundary"


def test_a_binary_model_for_a_three_class_mask_is_refused_before_training(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, classes=3)
    with pytest.raises(SanityCheckError, match="out_channels=3"):
        TRAIN(folder_config(tiny_config, root, TASK="multiclass", CLASSES=["a", "b", "c"]), global_config)


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_twelve_bands_train_from_npy_and_tiff(
    suffix: str, tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, bands=12, suffix=suffix)
    model = {**tiny_config["MODEL_CONFIG"], "in_channels": 12}
    result = TRAIN(folder_config(tiny_config, root, MODEL_CONFIG=model), global_config)
    stats = load_checkpoint(result.weight_dir / "last.pt")["normalization"]
    assert stats["method"] == "meanstd" and len(stats["mean"]) == 12


@pytest.mark.slow
def test_nan_no_data_pixels_count_in_no_loss_or_metric(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, suffix=".npy")
    for path in (root / "images").glob("*.npy"):
        image = np.load(path)
        image[:, :5] = np.nan  # a scene's edge without data
        np.save(path, image)
    model = {**tiny_config["MODEL_CONFIG"], "in_channels": 1}
    result = TRAIN(folder_config(tiny_config, root, MODEL_CONFIG=model), global_config)
    frame = history(result)
    assert result.status == "completed" and np.isfinite(frame[["train_loss", "val_loss", "val_dice"]]).all().all()


def test_val_groups_keep_each_scene_on_one_side(tmp_path: Path, tiny_config: dict) -> None:
    from training.data import split_dataset  # pylint: disable=import-outside-toplevel

    names = [f"scene{scene}_{tile}" for scene in range(5) for tile in range(4)]
    root = write_pairs(tmp_path / "set", [(16, 16)] * len(names), names=names)
    config = folder_config(tiny_config, root, VAL_GROUPS=r"^(scene\d+)_")
    train_set, val_set = split_dataset(config)
    scenes = [
        {train_set.dataset.pairs[i][0].stem.split("_")[0] for i in subset.indices} for subset in (train_set, val_set)
    ]
    assert scenes[0] and scenes[1] and not scenes[0] & scenes[1]
    assert len(val_set) == 4  # one scene of four tiles: VAL_FRACTION 0.25 of 20 tiles


@pytest.mark.slow
def test_init_from_loads_matching_layers_and_computes_its_own_statistics(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig, caplog: pytest.LogCaptureFixture
) -> None:
    source = TRAIN(dict(tiny_config, EPOCHS=1), global_config)
    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, classes=3)
    model = {**tiny_config["MODEL_CONFIG"], "out_channels": 3}
    config = folder_config(
        tiny_config,
        root,
        TASK="multiclass",
        CLASSES=["a", "b", "c"],
        MODEL_CONFIG=model,
        INIT_FROM=str(source.weight_dir / "best.pt"),
        OPTIMIZER_CONFIG={"lr": 0.0},
    )
    with caplog.at_level("INFO", logger="project"):
        result = TRAIN(config, global_config)
    line = next(record.getMessage() for record in caplog.records if record.getMessage().startswith("INIT_FROM"))
    assert "left initialised" in line and "tail.weight" in line  # the U-Net's last layer: other classes
    before = load_checkpoint(source.weight_dir / "best.pt")
    after = load_checkpoint(result.weight_dir / "last.pt")
    shared = [
        key
        for key, value in before["model"].items()
        if after["model"][key].shape == value.shape and "running_" not in key and "num_batches" not in key
    ]  # BatchNorm's statistics move in any training step; the weights do not with lr 0
    assert shared and all(torch.equal(before["model"][k], after["model"][k]) for k in shared)  # lr 0: unchanged
    assert after["normalization"] != before["normalization"]  # this folder's own statistics
    config.update(NORMALIZATION="init")
    kept = TRAIN(config, global_config)
    assert load_checkpoint(kept.weight_dir / "last.pt")["normalization"] == before["normalization"]


def test_patches_train_on_larger_and_mixed_size_images(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    root = write_pairs(tmp_path / "set", [(64, 64), (96, 80), (20, 24)] * 3)  # the last ones padded up to the patch
    config = folder_config(tiny_config, root, PATCH_SIZE=32, PATCH_FOREGROUND=0.5)
    result = TRAIN(config, global_config)
    assert result.status == "completed" and np.isfinite(history(result)["val_dice"]).all()


def test_init_from_on_the_command_line_sets_the_key() -> None:
    from config.overrides import resolve_config  # pylint: disable=import-outside-toplevel
    from train import build_parser  # pylint: disable=import-outside-toplevel

    config, _ = resolve_config(build_parser().parse_args(["--init-from", "weights/run/best.pt"]))
    assert config["INIT_FROM"] == "weights/run/best.pt"


def test_a_folder_mixing_grey_and_colour_images_names_a_file(tmp_path: Path) -> None:
    from utils.data.images import DataError  # pylint: disable=import-outside-toplevel
    from utils.data.normalization import compute_statistics  # pylint: disable=import-outside-toplevel

    root = write_pairs(tmp_path / "set", [(16, 16)] * 2)
    write_pairs(tmp_path / "colour", [(16, 16)], bands=3, names=["9"])
    for sub in ("images", "masks"):
        (tmp_path / "colour" / sub / "9.png").rename(root / sub / "9.png")
    with pytest.raises(DataError, match=r"images/9\.png has 3 bands, earlier ones 1"):
        compute_statistics(SegmentationFolder(root), "meanstd")


def test_an_image_without_a_valid_pixel_is_refused_by_name(
    tmp_path: Path, tiny_config: dict, global_config: GlobalConfig
) -> None:
    from utils.data.images import DataError  # pylint: disable=import-outside-toplevel

    root = write_pairs(tmp_path / "set", [(32, 32)] * 8, suffix=".npy")
    np.save(root / "images" / "3.npy", np.full((32, 32), np.nan, np.float32))  # it would score a perfect 1
    config = folder_config(tiny_config, root, MODEL_CONFIG={**tiny_config["MODEL_CONFIG"], "in_channels": 1})
    with pytest.raises(DataError, match=r"masks/3\.png has no pixel to learn from or score"):
        TRAIN(config, global_config)


def test_a_colour_can_be_ignored_in_colour_coded_masks(tmp_path: Path, tiny_config: dict) -> None:
    from config.schema import validate_config  # pylint: disable=import-outside-toplevel
    from training.data import build_datasets  # pylint: disable=import-outside-toplevel

    root = write_pairs(tmp_path / "set", [(8, 8)] * 4)
    colours = np.zeros((8, 8, 3), np.uint8)
    colours[:2] = (255, 0, 0)  # class 1
    colours[6:] = (255, 255, 255)  # unlabelled
    for path in (root / "masks").glob("*.png"):
        Image.fromarray(colours).save(path)
    config = folder_config(tiny_config, root, TASK="multiclass", CLASSES=["background", "road"], VAL_FRACTION=0.5)
    config.update(MASK_VALUES={"0,0,0": 0, "255,0,0": 1}, IGNORE_INDEX="255,255,255", TRAIN_TRANSFORM=None)
    train_set, _, _ = build_datasets(validate_config(config))
    target = train_set[0][1][0]
    assert (target[:2] == 1).all() and (target[2:6] == 0).all() and (target[6:] == -1).all()
