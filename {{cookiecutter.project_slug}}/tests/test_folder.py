"""SegmentationFolder: pairing by stem, transforms, and every bad folder named in one line."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.folder import SegmentationFolder
from utils.data.images import DataError

# --------------------------------------------------------------------------------------------------------------
# SegmentationFolder
# --------------------------------------------------------------------------------------------------------------


def make_folder(root: Path, size: tuple[int, int] = (12, 10)) -> Path:
    """Write three pairs (PNG/PNG, JPG/PNG, NPY/NPY) of ``size`` (HxW) under ``root``; return ``root``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = size
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[: h // 2, : w // 3] = 255
    image = np.where(mask > 0, 220, 30).astype(np.uint8)
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    Image.fromarray(np.stack([image] * 3, -1)).save(root / "images" / "b.JPG", quality=95)
    Image.fromarray(mask).save(root / "masks" / "b.png")
    np.save(root / "images" / "c.npy", image.astype(np.float32) / 255)
    np.save(root / "masks" / "c.npy", mask > 0)
    (root / "images" / "README.txt").write_text("not an image, ignored")
    return root


def test_segmentation_folder_pairs_and_items(tmp_path):
    """Pairs match by stem across PNG, JPG and .npy, sorted; items are aligned."""
    ds = SegmentationFolder(make_folder(tmp_path / "data"))
    assert [(i.name, m.name) for i, m in ds.pairs] == [("a.png", "a.png"), ("b.JPG", "b.png"), ("c.npy", "c.npy")]
    assert len(ds) == 3
    for image, mask in ds:
        assert image.shape == (1, 12, 10) and image.dtype == torch.float32
        assert mask.shape == (1, 12, 10) and mask.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert mask.sum() == 6 * 3
        # Bright pixels are exactly the mask (JPEG is lossy, so threshold rather than compare values).
        assert torch.equal((image > 0.5).float(), mask)
    image, _ = SegmentationFolder(tmp_path / "data", channels=3)[1]
    assert image.shape == (3, 12, 10)


def test_segmentation_folder_applies_transform(tmp_path):
    """The transform is applied to both tensors of a folder item."""
    ds = SegmentationFolder(make_folder(tmp_path / "data"), transform=lambda i, m: (i.flip(-1), m.flip(-1)))
    image, mask = ds[0]
    assert mask[0, 0, -1] == 1 and mask[0, 0, 0] == 0
    assert torch.equal((image > 0.5).float(), mask)


def test_segmentation_folder_missing_mask_names_the_file(tmp_path):
    """An image without a mask is refused at init, naming the image."""
    root = make_folder(tmp_path / "data")
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"image .*b\.JPG has no mask"):
        SegmentationFolder(root)


def test_segmentation_folder_mask_without_image_names_the_file(tmp_path):
    """A mask without an image is refused at init, naming the mask."""
    root = make_folder(tmp_path / "data")
    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(root / "masks" / "zzz.png")
    with pytest.raises(DataError, match=r"mask .*zzz\.png has no image"):
        SegmentationFolder(root)


def test_segmentation_folder_size_mismatch_names_the_paths(tmp_path):
    """Image and mask of different sizes are refused at init (PNG and .npy)."""
    root = make_folder(tmp_path / "data")
    Image.fromarray(np.zeros((12, 11), dtype=np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(DataError, match=r"size mismatch: image .*a\.png is 12x10.*mask .*a\.png is 12x11"):
        SegmentationFolder(root)
    root = make_folder(tmp_path / "npy")
    np.save(root / "masks" / "c.npy", np.zeros((5, 10), dtype=bool))
    with pytest.raises(DataError, match=r"size mismatch: .*c\.npy"):
        SegmentationFolder(root)


def test_segmentation_folder_corrupt_png_names_the_path(tmp_path):
    """A PNG of random bytes is refused at init, naming it."""
    root = make_folder(tmp_path / "data")
    (root / "images" / "a.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match=r"cannot read image .*images.a\.png"):
        SegmentationFolder(root)


def test_segmentation_folder_truncated_png_fails_when_loaded(tmp_path):
    """A truncated PNG passes init (header ok) and fails on load, naming it."""
    root = make_folder(tmp_path / "data", size=(64, 64))
    path = root / "masks" / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    ds = SegmentationFolder(root)  # the header is fine, so init cannot tell
    with pytest.raises(DataError, match=r"cannot read mask .*masks.a\.png"):
        _ = ds[0]
    assert ds[1][0].shape == (1, 64, 64)  # the other pairs still load


def test_segmentation_folder_missing_and_empty_folders(tmp_path):
    """Missing root, missing sub-folder and empty sub-folder are refused."""
    with pytest.raises(DataError, match=r"not found: .*nowhere"):
        SegmentationFolder(tmp_path / "nowhere")
    root = make_folder(tmp_path / "data")
    with pytest.raises(DataError, match=r"not found: .*data.labels"):
        SegmentationFolder(root, mask_dir="labels")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DataError, match=r"no image files .* in .*empty.images"):
        SegmentationFolder(tmp_path / "empty")


def test_segmentation_folder_duplicate_stem(tmp_path):
    """Two files with one stem in one folder are ambiguous and refused."""
    root = make_folder(tmp_path / "data")
    np.save(root / "images" / "a.npy", np.zeros((12, 10), dtype=np.float32))
    with pytest.raises(DataError, match=r"same stem in .*images: a\.npy and a\.png"):
        SegmentationFolder(root)


def test_data_error_is_a_value_error():
    """Callers catching ValueError also catch DataError."""
    assert issubclass(DataError, ValueError)
