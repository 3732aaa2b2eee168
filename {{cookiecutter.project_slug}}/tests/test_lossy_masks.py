"""Masks in a lossy format (JPEG): refused with the file and the way out, or read with MASK_THRESHOLD as their
lossless originals are; the masks that worked before (instance labels, floats, colours, "any value > 0") unchanged."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from config.schema import validate_config
from config.serialize import ConfigError
from training.data import build_datasets
from utils.data.folder import SegmentationFolder
from utils.data.images import DataError
from utils.data.samples import SegmentationSamples
from utils.data.synthetic import SyntheticShapes
from utils.data.targets import MaskEncoder
from utils.evaluation import samples_of
from utils.prediction import Predictor

REFUSED = r"is JPEG, a lossy format.*save the masks losslessly \(PNG or TIFF\)"


def shapes_folder(root: Path, mask_suffix: str, count: int = 6, size: int = 64) -> Path:
    """``count`` synthetic shapes as PNG images and 0/255 masks saved as ``mask_suffix`` (JPEG: PIL, quality 75)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shapes = SyntheticShapes(n_samples=count, size=size, seed=0)
    for index in range(count):
        image, mask = shapes[index]
        Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).save(root / "images" / f"{index:04d}.png")
        binary = Image.fromarray((mask[0].numpy() > 0).astype(np.uint8) * 255)
        binary.save(root / "masks" / f"{index:04d}{mask_suffix}", **({"quality": 75} if mask_suffix == ".jpg" else {}))
    return root


def targets(root: Path, encoder: MaskEncoder) -> torch.Tensor:
    """Every target of the folder, stacked: [N, 1, H, W]."""
    samples = SegmentationSamples(SegmentationFolder(root), encoder)
    return torch.stack([samples[index][1] for index in range(len(samples))])


def test_a_binary_jpeg_mask_is_refused_with_the_file_and_the_way_out(tmp_path: Path) -> None:
    root = shapes_folder(tmp_path, ".jpg")
    with pytest.raises(DataError, match=REFUSED + r", or set MASK_THRESHOLD \(e.g. 127") as caught:
        targets(root, MaskEncoder("binary", 1))
    assert str(root / "masks" / "0000.jpg") in str(caught.value) and "(as are 5 other masks)" in str(caught.value)
    # A JPEG under another name is one too: PIL reads the content's format.
    (root / "masks" / "0000.jpg").rename(root / "masks" / "0000.png")
    with pytest.raises(DataError, match=r"0000\.png is JPEG"):
        targets(root, MaskEncoder("binary", 1))


def test_multiclass_and_mapped_jpeg_masks_are_refused_without_a_threshold_to_offer(tmp_path: Path) -> None:
    root = shapes_folder(tmp_path, ".jpg", count=2)
    for encoder in (MaskEncoder("multiclass", 3), MaskEncoder("binary", 1, mask_values={0: 0, 255: 1})):
        with pytest.raises(DataError, match=REFUSED + r"$") as caught:
            targets(root, encoder)
        assert "wrong classes" in str(caught.value)
    with pytest.raises(ValueError, match="MASK_THRESHOLD applies to binary and multilabel"):
        MaskEncoder("multiclass", 3, threshold=127)


def test_with_mask_threshold_a_jpeg_mask_gives_its_png_originals_target(tmp_path: Path) -> None:
    original = targets(shapes_folder(tmp_path / "png", ".png"), MaskEncoder("binary", 1))
    jpeg = shapes_folder(tmp_path / "jpg", ".jpg")
    thresholded = targets(jpeg, MaskEncoder("binary", 1, threshold=127))
    assert (thresholded != original).float().mean() < 0.01  # measured: 0 pixels of 6 x 64 x 64 differ
    # Read as before (any value > 0), the noise near edges is foreground: the bug MASK_THRESHOLD cures.
    noisy = torch.stack([torch.from_numpy(np.asarray(Image.open(path)) > 0) for path in sorted(jpeg.glob("masks/*"))])
    assert noisy.sum() > 1.2 * original.sum()


def test_mask_threshold_reaches_training_and_evaluation_from_the_config(tmp_path: Path, tiny_config: dict) -> None:
    root = shapes_folder(tmp_path, ".jpg", count=4, size=32)
    tiny_config.update(DATASET=SegmentationFolder, DATASET_CONFIG={"root": str(root)}, VAL_FRACTION=0.25)
    with pytest.raises(DataError, match=REFUSED):
        build_datasets(validate_config(tiny_config))
    train, val, _ = build_datasets(validate_config({**tiny_config, "MASK_THRESHOLD": 127}))
    assert len(train) + len(val) == 4 and val[0][1].unique().tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="MASK_THRESHOLD reads binary and multilabel masks"):
        validate_config({**tiny_config, "MASK_THRESHOLD": 127, "TASK": "multiclass", "CLASSES": ["a", "b"]})
    with pytest.raises(ConfigError, match="MASK_THRESHOLD: must be >= 0"):
        validate_config({**tiny_config, "MASK_THRESHOLD": -1})
    # evaluate.py reads the folder with the checkpoint's own config
    config = {"TASK": "binary", "CLASSES": ["shape"], "MODEL_CONFIG": {"in_channels": 1}}
    with pytest.raises(DataError, match=REFUSED):
        samples_of(Predictor(torch.nn.Identity(), config, None, "run"), root)
    _, samples = samples_of(Predictor(torch.nn.Identity(), {**config, "MASK_THRESHOLD": 127}, None, "run"), root)
    assert samples[0][1].unique().tolist() == [0.0, 1.0]


def test_a_jpeg_compressed_tiff_mask_is_refused_from_its_header(tmp_path: Path) -> None:
    root = shapes_folder(tmp_path, ".png", count=1)
    mask = root / "masks" / "0000.png"
    tifffile.imwrite(mask.with_suffix(".tif"), np.asarray(Image.open(mask)), photometric="minisblack")
    mask.unlink()
    with tifffile.TiffFile(mask.with_suffix(".tif"), mode="r+b") as tif:  # the header as a JPEG-TIFF writer leaves it
        tif.pages[0].tags["Compression"].overwrite(tifffile.COMPRESSION.JPEG)
    assert SegmentationFolder(root).lossy_masks == {mask.with_suffix(".tif"): "JPEG-compressed TIFF"}


def test_the_masks_that_worked_keep_working(tmp_path: Path) -> None:
    """Instance labels 1..N (16-bit), float masks and colour masks: read as before, and not lossy."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    labels = np.zeros((8, 8), np.uint16)
    labels[1:3, 1:3], labels[5:7, 4:8] = 1, 700  # two instances
    colours = np.zeros((8, 8, 3), np.uint8)
    colours[:4] = (255, 0, 0)
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    np.save(tmp_path / "masks" / "b.npy", (labels > 0).astype(np.float32) * 0.5)
    tifffile.imwrite(tmp_path / "masks" / "c.tif", labels)
    Image.fromarray(colours).save(tmp_path / "masks" / "d.png")
    for stem in "abcd":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"{stem}.png")
    folder = SegmentationFolder(tmp_path)
    assert not folder.lossy_masks
    binary = SegmentationSamples(folder, MaskEncoder("binary", 1))  # any value > 0 is foreground
    for index in range(3):
        assert torch.equal(binary[index][1][0], torch.from_numpy(labels > 0).float())
    assert torch.equal(binary[3][1][0], torch.from_numpy(colours[..., 0] > 0).float())
    colour = MaskEncoder("binary", 1, mask_values={"0,0,0": 0, "255,0,0": 1})
    assert torch.equal(colour(folder[3][1], "d")[0], torch.from_numpy(colours[..., 0] > 0).float())
    # A threshold above the labels' values treats them as the user asked: MASK_THRESHOLD applies to every mask.
    assert MaskEncoder("binary", 1, threshold=1)(folder[0][1], "a").sum() == 8
    assert MaskEncoder("multilabel", 2, threshold=127)(torch.tensor([[[0, 128]], [[255, 127]]]), "m").tolist() == [
        [[0.0, 1.0]],
        [[1.0, 0.0]],
    ]
