"""read_image, read_mask and image_size: formats, bands, scaling, raw mask values, and bad files named in one line."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from utils.data.images import IMAGE_EXTENSIONS, DataError, image_size, read_image, read_mask

RNG = np.random.default_rng(0)
BANDS12 = RNG.random((12, 64, 64)).astype(np.float32)  # a 12-band multispectral tile, CxHxW

# --------------------------------------------------------------------------------------------------------------
# Images: PNG and .npy
# --------------------------------------------------------------------------------------------------------------


def test_read_image_formats_and_scaling(tmp_path):
    """PNG (8 and 16 bit) and .npy (HW, HWC, CHW) read as float32 [C, H, W]; 1 <-> 3 band conversions kept."""
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

    hwc = RNG.random((5, 6, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", hwc)
    np.save(tmp_path / "chw.npy", hwc.transpose(2, 0, 1))
    for name in ("hwc.npy", "chw.npy"):
        assert np.array_equal(read_image(tmp_path / name), hwc.transpose(2, 0, 1))  # None: the file's 3 bands
        assert np.array_equal(read_image(tmp_path / name, channels=3), hwc.transpose(2, 0, 1))
    luma = read_image(tmp_path / "hwc.npy", channels=1)
    assert luma.shape == (1, 5, 6) and np.allclose(luma[0], hwc @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    for out in (read_image(tmp_path / "g.png"), read_image(tmp_path / "hwc.npy")):
        assert out.dtype == np.float32
    with pytest.raises(ValueError, match="channels"):
        read_image(tmp_path / "g.png", channels=0)


def test_npy_with_12_bands_channel_last_and_channel_first(tmp_path):
    """(64, 64, 12) and (12, 64, 64) float32 arrays both read as the same 12 bands, none lost."""
    np.save(tmp_path / "last.npy", BANDS12.transpose(1, 2, 0))
    np.save(tmp_path / "first.npy", BANDS12)
    for name in ("last.npy", "first.npy"):
        assert np.array_equal(read_image(tmp_path / name), BANDS12)
        assert np.array_equal(read_image(tmp_path / name, channels=12), BANDS12)
        assert image_size(tmp_path / name, "image") == (64, 64)
    # RGB + near infrared keeps its fourth band (it used to be dropped as if it were alpha).
    np.save(tmp_path / "rgbn.npy", BANDS12[:4].transpose(1, 2, 0))
    assert np.array_equal(read_image(tmp_path / "rgbn.npy"), BANDS12[:4])


def test_band_mismatch_names_file_bands_and_setting(tmp_path):
    """Asking 3 or 1 bands of a 12-band file is refused with the file, its band count and the setting."""
    np.save(tmp_path / "tile.npy", BANDS12)
    for channels in (1, 3, 4):
        with pytest.raises(DataError, match=rf"tile\.npy has 12 bands but DATASET_CONFIG\.channels is {channels}"):
            read_image(tmp_path / "tile.npy", channels=channels)


def test_rgba_png_gives_three_bands(tmp_path):
    """Alpha is transparency, not content: an RGBA PNG is 3 bands (1 when asked); grey + alpha is 1 band."""
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (3, 8, 9) and np.allclose(image, rgba[..., :3].transpose(2, 0, 1) / 255)
    assert read_image(tmp_path / "rgba.png", channels=1).shape == (1, 8, 9)
    Image.fromarray(rgba[..., :2], "LA").save(tmp_path / "la.png")
    assert np.allclose(read_image(tmp_path / "la.png"), rgba[None, ..., 0] / 255)


# --------------------------------------------------------------------------------------------------------------
# Images: TIFF
# --------------------------------------------------------------------------------------------------------------


def test_tiff_12_bands_multi_page_and_multi_sample(tmp_path):
    """Pages as bands (one array, or pages written one by one) and samples as bands (contig or planar) agree."""
    tifffile.imwrite(tmp_path / "pages.tif", BANDS12)  # axes QYX: 12 pages
    with tifffile.TiffWriter(tmp_path / "each.tif") as tif:
        for band in BANDS12:  # 12 series of one page each
            tif.write(band, photometric="minisblack")
    tifffile.imwrite(
        tmp_path / "samples.tif", BANDS12.transpose(1, 2, 0), photometric="minisblack", planarconfig="contig"
    )
    tifffile.imwrite(tmp_path / "planar.tiff", BANDS12, photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(tmp_path / "imagej.tif", BANDS12, imagej=True)  # axes CYX
    axes = set()
    for name in ("pages.tif", "each.tif", "samples.tif", "planar.tiff", "imagej.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            axes.add(tif.series[0].axes)
        assert np.array_equal(read_image(tmp_path / name), BANDS12), name
        assert image_size(tmp_path / name, "image") == (64, 64), name
        mask = read_mask(tmp_path / name)
        assert mask.shape == (12, 64, 64) and mask.dtype == np.float32
    assert {"QYX", "YX", "YXS", "SYX", "CYX"} <= axes  # every layout the reader claims was exercised
    assert {".tif", ".tiff"} <= set(IMAGE_EXTENSIONS)


def test_tiff_bit_depths_rgb_alpha_and_nan(tmp_path):
    """16-bit / 65535, 8-bit RGB / 255 with associated alpha dropped, float kept as stored with its NaN."""
    deep = RNG.integers(0, 4096, (20, 30), dtype=np.uint16)  # 12-bit data in 16-bit words, as cameras write
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    assert np.allclose(read_image(tmp_path / "deep.tif"), deep[None] / 65535, atol=1e-7)
    rgba = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["assocalpha"])
    assert np.allclose(read_image(tmp_path / "rgba.tif"), rgba[..., :3].transpose(2, 0, 1) / 255)
    # Unspecified and unassociated extra samples are bands (RGB + near infrared): tifffile writes a fourth band of a
    # 4xHxW array as unassociated alpha unless told photometric="minisblack".
    for extra in ("unspecified", "unassalpha"):
        tifffile.imwrite(tmp_path / "rgbn.tif", rgba, photometric="rgb", extrasamples=[extra])
        assert read_image(tmp_path / "rgbn.tif").shape == (4, 20, 30)
    tifffile.imwrite(tmp_path / "planar.tif", rgba.transpose(2, 0, 1))
    assert read_image(tmp_path / "planar.tif").shape == (4, 20, 30)
    floats = RNG.normal(1000.0, 50.0, (2, 20, 30)).astype(np.float32)
    floats[0, 3, 4] = floats[1, 10:, :5] = np.nan  # no-data pixels
    tifffile.imwrite(tmp_path / "float.tif", floats, photometric="minisblack", planarconfig="separate")
    image = read_image(tmp_path / "float.tif")
    assert np.array_equal(np.isnan(image), np.isnan(floats))
    assert np.array_equal(image[~np.isnan(image)], floats[~np.isnan(floats)])


# --------------------------------------------------------------------------------------------------------------
# Masks: raw values
# --------------------------------------------------------------------------------------------------------------


def test_read_mask_keeps_raw_values(tmp_path):
    """Grey PNG and .npy masks keep their values as int64 (no thresholding); bool is 0/1, float stays float."""
    values = np.array([[0, 1, 255], [0, 2, 7]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    np.save(tmp_path / "m.npy", values.astype(np.int32))
    for name in ("m.png", "m.npy"):
        mask = read_mask(tmp_path / name)
        assert mask.dtype == np.int64 and np.array_equal(mask, values[None])
    np.save(tmp_path / "b.npy", values > 0)
    assert np.array_equal(read_mask(tmp_path / "b.npy"), (values > 0)[None].astype(np.int64))
    np.save(tmp_path / "f.npy", values.astype(np.float64) / 2)
    mask = read_mask(tmp_path / "f.npy")
    assert mask.dtype == np.float32 and np.array_equal(mask, values[None] / 2)
    deep = np.array([[0, 300], [65535, 1]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.array_equal(read_mask(tmp_path / "deep.png"), deep[None].astype(np.int64))


def test_palette_png_mask_gives_indices(tmp_path):
    """A palette PNG gives its class indices, not the palette's colours."""
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    img = Image.fromarray(indices, "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 - 3) * 3)
    img.save(tmp_path / "p.png")
    mask = read_mask(tmp_path / "p.png")
    assert mask.shape == (1, 2, 3) and mask.dtype == np.int64 and np.array_equal(mask[0], indices)


def test_colour_and_multiband_masks_keep_their_channels(tmp_path):
    """RGB masks give M=3 (RGBA: alpha dropped); 4-band .npy and K-band TIFF masks give M=K."""
    colours = RNG.integers(0, 2, (6, 7, 3), dtype=np.uint8) * 255
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    alpha = np.full((6, 7, 1), 128, dtype=np.uint8)
    Image.fromarray(np.concatenate([colours, alpha], -1), "RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        mask = read_mask(tmp_path / name)
        assert mask.shape == (3, 6, 7) and mask.dtype == np.int64
        assert np.array_equal(mask, colours.transpose(2, 0, 1))
    labels = RNG.integers(0, 2, (4, 64, 64), dtype=np.uint8)  # multilabel: one band per label
    np.save(tmp_path / "labels.npy", labels.transpose(1, 2, 0))
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack", planarconfig="separate")
    for name in ("labels.npy", "labels.tif"):
        mask = read_mask(tmp_path / name)
        assert mask.dtype == np.int64 and np.array_equal(mask, labels), name


# --------------------------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------------------------


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
    np.save(tmp_path / "stack.npy", np.zeros((2, 3, 4, 4), dtype=np.float32))
    for reader in (read_image, read_mask, lambda path: image_size(path, "image")):
        with pytest.raises(DataError, match=r"stack\.npy.*shape"):
            reader(tmp_path / "stack.npy")


def test_corrupt_tiff_names_the_file(tmp_path):
    """Random bytes, a header without images, and a TIFF cut short all raise DataError naming the file."""
    (tmp_path / "noise.tif").write_bytes(RNG.bytes(500))
    (tmp_path / "empty.tif").write_bytes(b"II*\x00" + b"\x00" * 100)  # a valid byte-order mark, no image
    for name in ("noise.tif", "empty.tif"):
        for reader, kind in ((read_image, "image"), (read_mask, "mask"), (lambda p: image_size(p, "mask"), "mask")):
            with pytest.raises(DataError, match=rf"cannot read {kind} .*{name}"):
                reader(tmp_path / name)
    tifffile.imwrite(tmp_path / "cut.tif", BANDS12)
    (tmp_path / "cut.tif").write_bytes((tmp_path / "cut.tif").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"cannot read image .*cut\.tif"):
        read_image(tmp_path / "cut.tif")


def test_tiff_size_comes_from_the_header(tmp_path):
    """image_size reads the TIFF's header only: a file whose pixel data is cut short still reports its size."""
    image = RNG.random((3, 40, 50)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cut.tif", image, photometric="minisblack", planarconfig="separate")
    with tifffile.TiffFile(tmp_path / "cut.tif") as tif:
        first_strip = tif.pages[0].dataoffsets[0]
    assert first_strip < 1000  # tifffile writes the header and IFD before the pixel data
    (tmp_path / "cut.tif").write_bytes((tmp_path / "cut.tif").read_bytes()[: first_strip + 100])
    assert image_size(tmp_path / "cut.tif", "image") == (40, 50)
    with pytest.raises(DataError, match=r"cut\.tif"):
        read_image(tmp_path / "cut.tif")


def test_truncated_png_fails_on_read_with_path(tmp_path):
    """A PNG cut short after its header fails on decode with DataError."""
    path = tmp_path / "cut.png"
    Image.fromarray(RNG.integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixel data cut short
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png"):
        read_image(path)


def test_a_grey_png_asked_for_four_bands_is_refused_with_its_own_band_count(tmp_path):
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(DataError, match=r"grey\.png has 1 bands but DATASET_CONFIG\.channels is 4: set it to 1"):
        read_image(tmp_path / "grey.png", 4)


def test_a_band_mismatch_at_prediction_names_the_model_not_the_config(tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(DataError) as refusal:
        read_image(tmp_path / "two.npy", 4, expected_by="the model of w.pt")
    assert str(refusal.value) == (
        f"image {tmp_path / 'two.npy'} has 2 bands but the model of w.pt takes 4: give it images of 4 bands, "
        "or a model trained on 2-band images"
    )


def test_a_tiff_with_pages_of_two_sizes_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        tif.write(np.zeros((32, 32), np.uint8))
        tif.write(np.zeros((16, 16), np.uint8))  # a second image, not a band: it used to be dropped silently
    with pytest.raises(DataError, match=r"two\.tif: its pages differ \(\(32, 32\) uint8 and \(16, 16\) uint8\)"):
        read_image(tmp_path / "two.tif")
