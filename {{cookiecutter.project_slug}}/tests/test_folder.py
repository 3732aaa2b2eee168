"""SegmentationFolder: pairing by stem, bands, mixed sizes, transforms, group names, bad folders named in one line."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from utils.data.folder import SegmentationFolder, group_names
from utils.data.images import DataError
from utils.data.synthetic import SyntheticShapes

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
    """Pairs match by stem across PNG, JPG and .npy, sorted; items are aligned; masks keep their raw values."""
    ds = SegmentationFolder(make_folder(tmp_path / "data"))
    assert [(i.name, m.name) for i, m in ds.pairs] == [("a.png", "a.png"), ("b.JPG", "b.png"), ("c.npy", "c.npy")]
    assert len(ds) == 3 and ds.stems() == ["a", "b", "c"]
    raw_values = []
    for (image, mask), bands in zip(ds, (1, 3, 1), strict=True):  # channels None: each file's own bands (b.JPG is RGB)
        assert image.shape == (bands, 12, 10) and image.dtype == torch.float32
        assert mask.shape == (1, 12, 10) and mask.dtype == torch.int64
        assert image.min() >= 0 and image.max() <= 1
        assert (mask > 0).sum() == 6 * 3
        raw_values.append(mask.max().item())
        # Bright pixels are exactly the mask (JPEG is lossy, so threshold rather than compare values).
        assert torch.equal(image[0] > 0.5, mask[0] > 0)
    assert raw_values == [255, 255, 1]  # 0/255 PNG and bool .npy, not thresholded (targets.py encodes them)
    for channels in (1, 3):
        assert [image.shape[0] for image, _ in SegmentationFolder(tmp_path / "data", channels=channels)] == [
            channels
        ] * 3


def test_segmentation_folder_applies_transform(tmp_path):
    """The transform is applied to both tensors of a folder item."""
    ds = SegmentationFolder(make_folder(tmp_path / "data"), transform=lambda i, m: (i.flip(-1), m.flip(-1)))
    image, mask = ds[0]
    assert mask[0, 0, -1] == 255 and mask[0, 0, 0] == 0
    assert torch.equal(image > 0.5, mask > 0)


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
    assert ds[1][0].shape == (3, 64, 64)  # the other pairs still load


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


def test_segmentation_folder_accepts_mixed_sizes(tmp_path):
    """Pairs of different sizes (64x64 and 96x80) form one dataset; each item keeps its own size."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for stem, (h, w) in (("small", (64, 64)), ("large", (96, 80))):
        Image.fromarray(np.full((h, w), 90, dtype=np.uint8)).save(tmp_path / "images" / f"{stem}.png")
        Image.fromarray(np.eye(h, w, dtype=np.uint8) * 2).save(tmp_path / "masks" / f"{stem}.png")
    ds = SegmentationFolder(tmp_path)
    assert [tuple(image.shape) for image, _ in ds] == [(1, 96, 80), (1, 64, 64)]  # sorted by stem
    assert [tuple(mask.shape) for _, mask in ds] == [(1, 96, 80), (1, 64, 64)]
    assert ds[0][1].max() == 2  # a class index, kept as stored


def test_segmentation_folder_reads_12_band_tiffs(tmp_path):
    """12-band TIFF images with TIFF class-index masks; another band count than asked is refused when loaded."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    image = rng.random((12, 32, 40)).astype(np.float32)
    classes = rng.integers(0, 3, (32, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "images" / "t.tif", image, photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(tmp_path / "masks" / "t.tif", classes)
    for channels in (None, 12):
        got_image, got_mask = SegmentationFolder(tmp_path, channels=channels)[0]
        assert torch.equal(got_image, torch.from_numpy(image))
        assert got_mask.dtype == torch.int64 and torch.equal(got_mask[0], torch.from_numpy(classes).long())
    with pytest.raises(DataError, match=r"t\.tif has 12 bands but DATASET_CONFIG\.channels is 3"):
        _ = SegmentationFolder(tmp_path, channels=3)[0]
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="channels"):
            SegmentationFolder(tmp_path, channels=bad)


# --------------------------------------------------------------------------------------------------------------
# group_names
# --------------------------------------------------------------------------------------------------------------


def make_tiles(root: Path, stems: list[str]) -> SegmentationFolder:
    """A folder of tiny 4x4 pairs named ``stems``."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for stem in stems:
            Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(root / sub / f"{stem}.png")
    return SegmentationFolder(root)


def test_group_names_by_regex(tmp_path):
    """The first group of the expression, else the whole match, searched in each stem, in the pairs' order."""
    ds = make_tiles(tmp_path, ["sceneB_0_1", "sceneA_0_0", "sceneA_0_1", "sceneB_1_1"])
    assert group_names(ds, r"^(.*)_\d+_\d+$") == ["sceneA", "sceneA", "sceneB", "sceneB"]
    assert group_names(ds, r"scene[AB]") == ["sceneA", "sceneA", "sceneB", "sceneB"]
    assert group_names(ds, r"_(\d)_") == ["0", "0", "0", "1"]
    with pytest.raises(DataError, match=r"'sceneA_0_0' has no group: VAL_GROUPS 'sceneB' does not match"):
        group_names(ds, "sceneB")
    with pytest.raises(DataError, match=r"has no group"):
        group_names(ds, r"(x)?scene")  # the group exists but does not take part in the match
    with pytest.raises(DataError, match=r"VAL_GROUPS '\(unclosed' is neither a \.csv path nor a regular expression"):
        group_names(ds, "(unclosed")


def test_group_names_by_csv(tmp_path):
    """A CSV with columns stem,group names every stem's group; a stem missing from it is named."""
    ds = make_tiles(tmp_path / "data", ["t1", "t2", "t3"])
    (tmp_path / "groups.csv").write_text("stem,group,note\nt3,north,x\nt1,south,\nt2,north,\n")
    assert group_names(ds, str(tmp_path / "groups.csv")) == ["south", "north", "north"]
    (tmp_path / "short.csv").write_text("stem,group\nt1,south\nt3,north\n")
    with pytest.raises(DataError, match=r"image stem 't2' has no group in VAL_GROUPS file .*short\.csv"):
        group_names(ds, str(tmp_path / "short.csv"))
    (tmp_path / "columns.csv").write_text("name,scene\nt1,a\n")
    with pytest.raises(DataError, match=r"columns\.csv needs columns stem,group; it has name,scene"):
        group_names(ds, str(tmp_path / "columns.csv"))
    (tmp_path / "twice.csv").write_text("stem,group\nt1,a\nt2,a\nt3,a\nt1,b\n")
    with pytest.raises(DataError, match=r"twice\.csv gives stem 't1' two groups"):
        group_names(ds, str(tmp_path / "twice.csv"))
    with pytest.raises(DataError, match=r"cannot read VAL_GROUPS file .*nowhere\.csv"):
        group_names(ds, str(tmp_path / "nowhere.csv"))


def test_group_names_needs_file_names():
    """A dataset without .pairs (synthetic) cannot be split by group: said in one line."""
    with pytest.raises(DataError, match=r"VAL_GROUPS needs a dataset with file names \(SegmentationFolder\)"):
        group_names(SyntheticShapes(n_samples=2), r"(.*)")
