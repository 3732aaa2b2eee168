"""Datasets (synthetic shapes, image/mask folders), file readers and paired transforms."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.folder import SegmentationFolder
from utils.data.images import DataError, read_image, read_mask
from utils.data.synthetic import SyntheticShapes
from utils.data.transforms import Compose, RandomFlipRotate

# --------------------------------------------------------------------------------------------------------------
# SyntheticShapes
# --------------------------------------------------------------------------------------------------------------


def test_synthetic_shapes_shapes_dtypes_and_range():
    """Images are float32 [C, S, S] in [0, 1]; masks float32 [1, S, S] of 0/1."""
    ds = SyntheticShapes(n_samples=8, size=32, channels=1)
    assert len(ds) == 8
    for image, mask in ds:
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert mask.shape == (1, 32, 32) and mask.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    image, mask = SyntheticShapes(n_samples=2, size=16, channels=3)[1]
    assert image.shape == (3, 16, 16) and mask.shape == (1, 16, 16)


def test_synthetic_shapes_is_deterministic_per_seed():
    """Same seed, same samples (in any order); another seed, other samples."""
    first, again, other = (
        SyntheticShapes(n_samples=4, seed=3),
        SyntheticShapes(n_samples=4, seed=3),
        SyntheticShapes(n_samples=4, seed=4),
    )
    for i in range(4):
        assert torch.equal(first[i][0], again[i][0]) and torch.equal(first[i][1], again[i][1])
        assert not torch.equal(first[i][0], other[i][0])
    # Indexing order does not matter: sample i depends only on (seed, i).
    assert torch.equal(first[2][0], SyntheticShapes(n_samples=4, seed=3)[2][0])
    assert not torch.equal(first[0][1], first[1][1])


def test_synthetic_masks_are_mostly_non_empty_and_contrast_with_background():
    """Most samples hold a shape, and shapes stand out."""
    ds = SyntheticShapes(n_samples=64, size=32)
    fractions = []
    gaps = []
    for image, mask in ds:
        fractions.append(mask.mean().item())
        if mask.any():
            gaps.append(image[mask.bool().expand_as(image)].mean() - image[~mask.bool().expand_as(image)].mean())
    assert sum(f > 0 for f in fractions) >= 0.9 * len(ds)
    assert max(fractions) < 0.9  # there is background to find too
    # Shapes are clearly brighter than the background: the task is learnable.
    assert min(gaps) > 0.2


def test_synthetic_shapes_is_fast():
    """512 samples of 64x64 generate well under a second."""
    ds = SyntheticShapes(n_samples=512, size=64)
    start = time.perf_counter()
    samples = [ds[i] for i in range(len(ds))]
    assert time.perf_counter() - start < 1.0 and len(samples) == 512


def test_synthetic_shapes_validates_arguments():
    """Bad arguments raise ValueError naming the argument."""
    for kwargs, name in [({"n_samples": 0}, "n_samples"), ({"size": 4}, "size"), ({"channels": 2}, "channels")]:
        with pytest.raises(ValueError, match=name):
            SyntheticShapes(**kwargs)
    with pytest.raises(IndexError):
        _ = SyntheticShapes(n_samples=2)[2]


def test_synthetic_shapes_applies_transform():
    """The paired transform sees and replaces both tensors."""

    def invert(image, mask):
        return 1 - image, 1 - mask

    plain = SyntheticShapes(n_samples=1, size=16)[0]
    inverted = SyntheticShapes(n_samples=1, size=16, transform=invert)[0]
    assert torch.equal(inverted[0], 1 - plain[0]) and torch.equal(inverted[1], 1 - plain[1])


def test_synthetic_shapes_works_in_a_dataloader_with_workers():
    """Worker processes produce exactly the samples of the main process."""
    loader = torch.utils.data.DataLoader(SyntheticShapes(n_samples=6, size=16), batch_size=3, num_workers=2)
    images = torch.cat([image for image, _ in loader])
    assert torch.equal(images, torch.stack([SyntheticShapes(n_samples=6, size=16)[i][0] for i in range(6)]))


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


# --------------------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------------------


def asymmetric_pair(height: int = 8, width: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """An image with distinct values everywhere (no flip or rotation maps it onto itself) and its > 0.5 mask."""
    image = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width) / (height * width)
    image = torch.cat([image, 1 - image])  # two channels, to check every channel moves together
    return image, (image[:1] > 0.5).float()


def test_random_flip_rotate_keeps_image_and_mask_aligned():
    """Every flip/rotation moves image channels and mask together."""
    transform = RandomFlipRotate()
    image, mask = asymmetric_pair()
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == image.shape and out_mask.shape == mask.shape
        assert torch.equal(out_mask, (out_image[:1] > 0.5).float())
        assert torch.equal(out_image[1], 1 - out_image[0])
        seen.add(tuple(out_image[0].flatten().tolist()))
    assert len(seen) == 8  # every one of the 8 flips/rotations of the square shows up


def test_random_flip_rotate_reproduces_under_manual_seed():
    """torch.manual_seed reproduces the sequence of transforms."""
    transform = Compose([RandomFlipRotate(), RandomFlipRotate(p_hflip=0.3)])
    image, mask = asymmetric_pair()

    def run():
        torch.manual_seed(123)
        return [transform(image, mask) for _ in range(10)]

    for (image_a, mask_a), (image_b, mask_b) in zip(run(), run(), strict=True):
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)


def test_random_flip_rotate_probabilities_and_non_square():
    """Probabilities 0 and 1 are honoured; non-square inputs are not rotated."""
    image, mask = asymmetric_pair(4, 6)
    never = RandomFlipRotate(p_hflip=0, p_vflip=0, rotate90=False)
    out_image, out_mask = never(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)
    always_h = RandomFlipRotate(p_hflip=1, p_vflip=0, rotate90=True)  # rotation skipped: 4x6 is not square
    for _ in range(5):
        out_image, out_mask = always_h(image, mask)
        assert torch.equal(out_image, image.flip(-1)) and torch.equal(out_mask, mask.flip(-1))
    with pytest.raises(ValueError, match="p_vflip"):
        RandomFlipRotate(p_vflip=1.5)


def test_compose_applies_in_order():
    """Compose applies its transforms first to last."""

    def add_one(image, mask):
        return image + 1, mask

    def double(image, mask):
        return image * 2, mask

    image, mask = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    assert torch.equal(Compose([add_one, double])(image, mask)[0], torch.full((1, 2, 2), 2.0))
    assert torch.equal(Compose([double, add_one])(image, mask)[0], torch.full((1, 2, 2), 1.0))
