"""read_image and read_mask: formats, scaling, and one line naming the path of a bad file."""

import numpy as np
import pytest
from PIL import Image

from utils.data.images import DataError, read_image, read_mask

# --------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------


def test_read_image_formats_and_scaling(tmp_path):
    """PNG (8 and 16 bit) and .npy (HW, HWC, CHW) read as float32 [C, H, W] in [0, 1]."""
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert np.allclose(read_image(tmp_path / "g.png"), gray[None] / 255)
    rgb = read_image(tmp_path / "g.png", channels=3)
    assert rgb.shape == (3, 3, 4) and np.allclose(rgb[2], gray / 255)

    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert np.allclose(read_image(tmp_path / "d.png"), deep[None] / 65535, atol=1e-6)
    np.save(tmp_path / "d.npy", deep)
    assert np.allclose(read_image(tmp_path / "d.npy"), deep[None] / 65535, atol=1e-6)

    hwc = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", hwc)
    np.save(tmp_path / "chw.npy", hwc.transpose(2, 0, 1))
    assert np.array_equal(read_image(tmp_path / "hwc.npy", channels=3), hwc.transpose(2, 0, 1))
    assert np.array_equal(read_image(tmp_path / "chw.npy", channels=3), hwc.transpose(2, 0, 1))
    assert read_image(tmp_path / "hwc.npy").shape == (1, 5, 6)
    for out in (read_image(tmp_path / "g.png"), read_image(tmp_path / "hwc.npy")):
        assert out.dtype == np.float32


def test_read_mask_binarises(tmp_path):
    """Any value > 0 is foreground, whatever the file format or dtype."""
    values = np.array([[0, 1, 255], [0, 0, 7]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    np.save(tmp_path / "m.npy", values.astype(np.int64))
    expected = (values > 0)[None].astype(np.float32)
    assert np.array_equal(read_mask(tmp_path / "m.png"), expected)
    assert np.array_equal(read_mask(tmp_path / "m.npy"), expected)
    assert read_mask(tmp_path / "m.png").dtype == np.float32


def test_readers_name_the_path_of_bad_files(tmp_path):
    """Garbage, missing and unsupported files raise DataError naming the path."""
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(DataError, match=r"cannot read image .*garbage\.png"):
        read_image(garbage)
    with pytest.raises(DataError, match=r"cannot read mask .*garbage\.png"):
        read_mask(garbage)
    with pytest.raises(DataError, match=r"missing\.npy"):
        read_image(tmp_path / "missing.npy")
    np.save(tmp_path / "ints.npy", np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(DataError, match=r"ints\.npy.*dtype"):
        read_image(tmp_path / "ints.npy")


def test_truncated_png_fails_on_read_with_path(tmp_path):
    """A PNG cut short after its header fails on decode with DataError."""
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixel data cut short
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png"):
        read_image(path)
