"""predict.py on real data: tiles blended as whole images predict, label maps of every task, probabilities, many
bands, unreadable files among good ones, outputs that would overwrite, large scenes, and checkpoints older than
tasks. GeoTIFF georeferencing: tests/test_predict_model_kinds.py, for checkpoints and .onnx files alike."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from checkpoints import save_checkpoint
from PIL import Image
from torch import nn

import predict
from models.unet import UNet
from utils.data.images import read_image
from utils.prediction import load_predictor
from utils.tiling import sliding_window

CPU = torch.device("cpu")
STATS = {"method": "meanstd", "mean": [0.4], "std": [0.2]}


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """predict.main on the CPU: exit status, stdout, stderr."""
    status = predict.main([*args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return status, out, err


def png(path: Path, shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> Path:
    """A random PNG image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)).save(path)
    return path


def whole_logits(weights: Path, image: Path) -> torch.Tensor:
    """Logits [1, K, H, W] of one whole-image pass, prepared as training prepares images."""
    predictor = load_predictor(weights, CPU)
    return sliding_window(predictor.model, predictor.prepare(read_image(image, predictor.channels)), None)


class Pointwise(nn.Module):
    """A 1x1 convolution claiming a divisor: its logits depend on each pixel alone, so any tiling must stitch them
    back exactly."""

    divisor = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [N, 3, H, W] of images [N, 2, H, W]."""
        return self.conv(images)


def test_tiles_stitch_exactly_where_context_does_not_matter_and_agree_with_a_whole_pass() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 2, 77, 130)
    pointwise = Pointwise().eval()
    with torch.no_grad():
        expected = pointwise(image)
    for tile, overlap in ((16, 0.5), (32, 0.25), (64, 0.0), (256, 0.25)):
        torch.testing.assert_close(sliding_window(pointwise, image, tile, overlap), expected, rtol=0, atol=1e-5)
    # A U-Net sees less context near a tile's edge: blended tiles agree with one pass up to that.
    torch.manual_seed(0)
    unet = UNet(in_channels=2, out_channels=1, base_channels=8, depth=3).eval()
    whole, tiled = sliding_window(unet, image, None), sliding_window(unet, image, 32, 0.5)
    assert tiled.shape == whole.shape == (1, 1, 77, 130) and tiled.dtype == torch.float32
    assert (tiled - whole).abs().mean() < 0.1 * whole.std()
    assert ((tiled > 0) == (whole > 0)).float().mean() > 0.99


def test_a_tile_must_be_a_multiple_of_the_models_divisor(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "w.pt")
    png(tmp_path / "in" / "a.png", (20, 20))
    status, _, err = run(
        capsys, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights), "--tile", "30"
    )
    assert status == 2 and err.strip() == "error: --tile 30 is not a multiple of the model's 4: use 32"
    assert not (tmp_path / "out").exists()


def test_binary_maps_tiled_and_normalised_as_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "w.pt", stats=STATS)
    image = png(tmp_path / "in" / "scene.png", (90, 150))
    status, out, _ = run(
        capsys, "-i", str(image), "-o", str(tmp_path / "out"), "--weights", str(weights), "--tile", "32"
    )
    assert status == 0 and out.startswith("1 mask(s) written")
    mask = np.array(Image.open(tmp_path / "out" / "scene.png"))
    assert mask.shape == (90, 150) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    expected = (whole_logits(weights, image)[0, 0] > 0).numpy()  # the statistics applied: logits differ without
    assert ((mask == 255) == expected).mean() > 0.99


def test_multiclass_label_maps_and_probabilities(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    classes = ["background", "interior", "boundary"]
    weights = save_checkpoint(tmp_path / "w.pt", "multiclass", classes, bands=3)
    image = png(tmp_path / "in" / "rgb.png", (40, 52, 3))
    args = ("-i", str(image), "-o", str(tmp_path / "out"), "--weights", str(weights), "--probabilities")
    assert run(capsys, *args, "--tile", "0")[0] == 0
    labels = np.array(Image.open(tmp_path / "out" / "rgb.png"))
    probabilities = tifffile.imread(tmp_path / "out" / "rgb_prob.tif")
    assert labels.dtype == np.uint8 and labels.shape == (40, 52) and labels.max() <= 2
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 40, 52)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(0))
    np.testing.assert_array_equal(labels, whole_logits(weights, image)[0].argmax(0).numpy())


def test_multilabel_maps_are_k_band_tiffs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "w.pt", "multilabel", ["road", "water"])
    image = png(tmp_path / "in" / "a.png", (24, 40))
    assert run(capsys, "-i", str(image), "-o", str(tmp_path / "out"), "--weights", str(weights))[0] == 0
    labels = tifffile.imread(tmp_path / "out" / "a.tif")
    assert labels.shape == (2, 24, 40) and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 255}
    np.testing.assert_array_equal(labels == 255, (whole_logits(weights, image)[0] > 0).numpy())


def test_twelve_band_tiff_and_npy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "w.pt", bands=12, DATASET_CONFIG={"channels": 12})
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "bands.tif", rng.integers(0, 4096, (12, 36, 44), dtype=np.uint16))
    np.save(tmp_path / "in" / "last.npy", rng.random((64, 64, 12), dtype=np.float32))
    png(tmp_path / "in" / "grey.png", (16, 16))  # 1 band for a 12-band model: said, and the others predicted
    status, out, err = run(capsys, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert status == 1 and out.startswith("2 of 3 mask(s) written")
    assert len(err.strip().splitlines()) == 1 and "grey.png" in err and "12" in err
    assert tifffile.imread(tmp_path / "out" / "bands.tif").shape == (36, 44)
    assert np.array(Image.open(tmp_path / "out" / "last.png")).shape == (64, 64)


def test_an_unreadable_file_is_one_line_and_the_others_are_predicted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = save_checkpoint(tmp_path / "w.pt")
    for index in range(3):
        png(tmp_path / "in" / f"{index}.png", (20, 28), seed=index)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    status, out, err = run(capsys, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert status == 1 and out.startswith(f"3 of 4 mask(s) written to {tmp_path / 'out'}")
    assert err.count("\n") == 1 and err.startswith("error: cannot read image") and "broken.png" in err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize(
    ("names", "args", "words"),
    [
        (["s.tif"], ("-o", "{in}"), "would overwrite the input"),  # a TIFF's label map is <stem>.tif
        (["x.png", "x_prob.tif"], ("-o", "{out}", "--probabilities"), "would both write x_prob.tif"),
        (["a.png", "a.tif"], ("-o", "{out}", "--probabilities"), "would both write a_prob.tif"),
    ],
)
def test_outputs_never_overwrite_inputs_or_each_other(
    names: list[str], args: tuple[str, ...], words: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = save_checkpoint(tmp_path / "w.pt")
    (tmp_path / "in").mkdir()
    for name in names:
        if name.endswith(".tif"):
            tifffile.imwrite(tmp_path / "in" / name, np.zeros((8, 8), np.uint8))
        else:
            png(tmp_path / "in" / name, (8, 8))
    before = sorted((tmp_path / "in").iterdir())
    paths = [arg.replace("{in}", str(tmp_path / "in")).replace("{out}", str(tmp_path / "out")) for arg in args]
    status, _, err = run(capsys, "-i", str(tmp_path / "in"), "--weights", str(weights), *paths)
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1
    assert sorted((tmp_path / "in").iterdir()) == before and not (tmp_path / "out").exists()


def test_an_old_checkpoint_predicts_binary_masks_as_before(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "old.pt", old=True)
    image = png(tmp_path / "in" / "a.png", (30, 44, 3))  # colour into a 1-band model: luma, as training read it
    assert run(capsys, "-i", str(image), "-o", str(tmp_path / "out"), "--weights", str(weights))[0] == 0
    mask = np.array(Image.open(tmp_path / "out" / "a.png"))
    assert mask.shape == (30, 44) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, (whole_logits(weights, image)[0, 0] > 0).numpy())


@pytest.mark.slow
def test_a_6000x4000_16_bit_png_fits_in_3_gb(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "w.pt", stats=STATS)
    rows = np.linspace(0, 60000, 4000, dtype=np.uint16)[:, None]
    scene = (rows + np.random.default_rng(0).integers(0, 4000, (4000, 6000), dtype=np.uint16)).astype(np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(scene).save(tmp_path / "in" / "scene.png")
    del scene
    command = f"ulimit -v 3000000 && exec {sys.executable} predict.py -i {tmp_path / 'in'} -o {tmp_path / 'out'}"
    result = subprocess.run(
        ["bash", "-c", f"{command} --weights {weights} --device cpu"],
        cwd=Path(predict.__file__).parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    mask = np.array(Image.open(tmp_path / "out" / "scene.png"))
    assert mask.shape == (4000, 6000) and set(np.unique(mask)) <= {0, 255}
