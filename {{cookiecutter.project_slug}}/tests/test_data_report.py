"""data_report.py: the figures of a small labelled folder, its suggestions, its bad inputs, that it writes nothing;
and the rare-class line of a run, from the normalisation pass (each training sample read once)."""

import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from user_errors import check_one_line, snapshot

import data_report
import utils.data.folder
from config.schema import validate_config
from config.train_config import TRAIN_CONFIG
from training.data import build_datasets
from utils.data.fingerprint import class_weights

CLASSES = ["background", "interior", "boundary"]
THREE = ("--set", "TASK=multiclass", "--set", f"CLASSES={CLASSES!r}", "--set", "MODEL_CONFIG.out_channels=3")


def nuclei_folder(root: Path, sizes: tuple[tuple[int, int], ...] = ((32, 32),) * 5 + ((40, 48),)) -> np.ndarray:
    """Tiles of ``sizes`` (H, W), each a 10x10 nucleus: interior 1, a 1 px rim 2 (about 3.5 % of a 32x32 tile);
    the nucleus is left out of the last tile's mask (it holds no object). Returns all masks' pixels, flat."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    pixels = []
    for index, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), dtype=np.uint8)
        if index < len(sizes) - 1:
            mask[4 + index : 14 + index, 6:16] = 2
            mask[5 + index : 13 + index, 7:15] = 1
        image = np.where(mask > 0, 200, 50).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"tile{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"tile{index}.png")
        pixels.append(mask.ravel())
    return np.concatenate(pixels)


def test_the_report_gives_the_folders_figures_and_suggestions(tmp_path, capsys):
    pixels = nuclei_folder(tmp_path / "data")
    before = snapshot(tmp_path)
    assert data_report.main([str(tmp_path / "data"), *THREE, "--set", r"VAL_GROUPS=^tile\d"]) == 0
    out = capsys.readouterr().out
    assert snapshot(tmp_path) == before  # it writes nothing, not even a log folder
    assert "6 images" in out and "size HxW: min 32x32, median 32x32, max 40x48; 2 distinct" in out, out
    assert "bands (sampled): [1]; stored as uint8 (6)" in out and "mask values (sampled): 0, 1, 2" in out, out
    shares = np.bincount(pixels, minlength=3) / pixels.size
    assert 0.02 < shares[2] < 0.05, shares  # a thin class, as meant
    for name, share, absent in zip(CLASSES, shares, ("0.0", "16.7", "16.7"), strict=True):  # the last tile: none
        assert f"class {name!r} (sampled): {100 * share:.2f} % of pixels, absent from {absent} % of images" in out, out
    assert "objects per image: min 0, median 1, max 1" in out, out  # the boundary rim: one object, 8-connected
    weights = class_weights(shares, "multiclass")
    assert weights[0] == 1.0 and weights[2] > weights[1] > 1.0, weights
    assert f"--set 'LOSS_CONFIG.class_weights={weights}'" in out, out
    assert "--set PATCH_SIZE=32 " in out and "--set MODEL_CONFIG.depth=2 " in out, out  # 32 px / 4 = 8 px deepest
    assert "--set NORMALIZATION=" in out, out
    assert "--set DATA_LOADER_CONFIG.batch_size=2 " in out, out  # 6 images: a batch of more would step once an epoch
    assert "VAL_GROUPS: 6 groups (images): tile0 (1), tile1 (1)" in out, out


def test_without_a_folder_the_report_reads_the_configs_dataset(capsys):
    argv = ["--set", "DATASET_CONFIG.n_samples=8", "--set", "DATASET_CONFIG.size=32", "--max-images", "4"]
    assert data_report.main(argv) == 0
    out = capsys.readouterr().out
    assert "DATASET: 8 images; 4 read" in out and "size HxW (sampled): min 32x32, median 32x32, max 32x32" in out, out
    assert "class 'shape' (sampled)" in out and "LOSS_CONFIG.class_weights" not in out, out  # shapes are not rare


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: None, ("dataset folder not found",)),
        (lambda root: (root / "images").mkdir(parents=True) or (root / "masks").mkdir(), ("no image files",)),
        (lambda root: nuclei_folder(root) is None or (root / "images/tile2.png").write_bytes(b"\x89PNG"), ("tile2",)),
    ],
    ids=["missing folder", "no images", "unreadable file"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, words):
    make(tmp_path / "data")
    before = snapshot(tmp_path)
    status = data_report.main([str(tmp_path / "data")])  # in this process: a traceback would fail the test
    output = capsys.readouterr()
    check_one_line(subprocess.CompletedProcess([], status, output.out, output.err), 2, words)
    assert output.err.count("\n") == 1 and snapshot(tmp_path) == before


def thin_config(root: Path, **changes) -> dict:
    """The default config on the nuclei folder at ``root``: three classes, one tile of six validates."""
    config = {**TRAIN_CONFIG, "DATASET": utils.data.folder.SegmentationFolder, "DATASET_CONFIG": {"root": str(root)}}
    config.update(TASK="multiclass", CLASSES=CLASSES, VAL_FRACTION=1 / 6, **changes)
    config["MODEL_CONFIG"] = {**config["MODEL_CONFIG"], "out_channels": 3}
    return validate_config(config)


@pytest.mark.parametrize(
    ("changes", "warned"),
    [
        ({}, True),
        ({"LOSS_CONFIG": {"class_weights": [1.0, 1.0, 5.0]}}, False),
        ({"LOSS_CONFIG": {"class_weights": [1.0, 5.0, 1.0]}}, True),  # the weight goes to another class
        ({"PATCH_SIZE": 16, "PATCH_FOREGROUND": 0.5}, False),
        ({"NORMALIZATION": None}, False),  # no statistics pass: no second pass for the counts either
    ],
    ids=["default", "class weights", "weights elsewhere", "foreground patches", "no normalisation"],
)
def test_a_rare_class_without_a_remedy_gets_one_line(tmp_path, caplog, monkeypatch, changes, warned):
    nuclei_folder(tmp_path / "data")
    reads, read_mask = [], utils.data.folder.read_mask

    def counted(path, *args, **kwargs):
        reads.append(path)
        return read_mask(path, *args, **kwargs)

    monkeypatch.setattr(utils.data.folder, "read_mask", counted)
    with caplog.at_level(logging.WARNING, logger="project"):
        build_datasets(thin_config(tmp_path / "data", **changes))
    lines = [record.getMessage() for record in caplog.records if "rare class" in record.getMessage()]
    assert len(lines) == warned, lines
    if warned:
        assert "'boundary' is 3." in lines[0] and "of 5 training images" in lines[0] and "class_weights" in lines[0]
    passes = 0 if "NORMALIZATION" in changes else 1
    assert len(reads) == len(set(reads)) == 5 * passes  # the five training samples, each read once: one pass
