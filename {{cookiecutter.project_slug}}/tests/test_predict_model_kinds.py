"""predict.py's files behave the same whether a checkpoint or an .onnx file predicts: GeoTIFF georeferencing kept,
an output folder inside the input folder, corrupt and unreadable images among good ones."""

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from checkpoints import save_checkpoint, save_onnx
from test_predict import png, run

KINDS = ("checkpoint", "onnx")


def model(kind: str, folder: Path, task: str = "binary", classes: list[str] | None = None, bands: int = 1) -> Path:
    """An untrained checkpoint, or an .onnx file of the export contract, of ``task``, ``classes`` and ``bands``."""
    if kind == "onnx":
        return save_onnx(folder / "model.onnx", task, classes, bands)
    return save_checkpoint(folder / "w.pt", task, classes, bands)


@pytest.mark.parametrize("kind", KINDS)
def test_a_geotiff_gives_geotiffs_with_its_georeferencing(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rasterio = pytest.importorskip("rasterio")
    transform = rasterio.transform.from_origin(500000.0, 4600000.0, 10.0, 10.0)
    profile = {"driver": "GTiff", "height": 40, "width": 56, "count": 3, "dtype": "uint16", "crs": "EPSG:32633"}
    (tmp_path / "in").mkdir()
    with rasterio.open(tmp_path / "in" / "scene.tif", "w", transform=transform, **profile) as target:
        target.write(np.random.default_rng(0).integers(0, 65535, (3, 40, 56), dtype=np.uint16))
    weights = model(kind, tmp_path, "multiclass", ["a", "b"], bands=3)
    args = ("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights), "--probabilities")
    assert run(capsys, *args, "--tile", "32")[0] == 0
    for name, count in (("scene.tif", 1), ("scene_prob.tif", 2)):
        with rasterio.open(tmp_path / "out" / name) as written:
            assert written.crs.to_epsg() == 32633 and written.transform == transform, name
            assert (written.count, written.height, written.width) == (count, 40, 56)


@pytest.mark.parametrize("kind", KINDS)
def test_an_output_folder_inside_the_inputs_is_used_and_never_overwrites_them(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = model(kind, tmp_path)
    inputs = tmp_path / "in"
    tifffile.imwrite(png(inputs / "a.png", (12, 16)).with_name("s.tif"), np.zeros((12, 16), np.uint8))
    before = {path: path.read_bytes() for path in inputs.iterdir()}
    # The input folder itself: s.tif's label map is s.tif
    status, _, err = run(capsys, "-i", str(inputs), "-o", str(inputs), "--weights", str(weights))
    assert status == 2 and "would overwrite the input" in err and err.count("\n") == 1
    # A folder inside it: a folder's images are its own files, not its sub-folders'
    status, out, _ = run(capsys, "-i", str(inputs), "-o", str(inputs / "masks"), "--weights", str(weights))
    assert status == 0 and out.startswith("2 mask(s) written")
    assert sorted(path.name for path in (inputs / "masks").iterdir()) == ["a.png", "s.tif"]
    masks = {path: path.read_bytes() for path in (inputs / "masks").iterdir()}
    # A recursive pattern finds those masks as inputs too: in/a.png and in/masks/a.png would write one file
    status, _, err = run(capsys, "-i", str(inputs / "**"), "-o", str(inputs / "masks"), "--weights", str(weights))
    assert status == 2 and "would both write a.png" in err and err.count("\n") == 1
    assert {path: path.read_bytes() for path in inputs.iterdir() if path.is_file()} == before
    assert {path: path.read_bytes() for path in (inputs / "masks").iterdir()} == masks


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("broken.png", b"\x89PNG not really"),  # a corrupt tile
        ("notes.tif", b"plain text, not an image"),
        ("array.npy", b"\x93NUMPY garbage"),
        ("locked.png", None),  # permission denied
    ],
)
def test_a_bad_image_among_good_ones_is_one_line_and_the_others_are_predicted(
    kind: str, name: str, data: bytes | None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = model(kind, tmp_path)
    for index in range(3):
        png(tmp_path / "in" / f"{index}.png", (20, 28), seed=index)
    bad = tmp_path / "in" / name
    if data is None:
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its permissions")
        png(bad, (20, 28)).chmod(0)
    else:
        bad.write_bytes(data)
    status, out, err = run(capsys, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert status == 1 and out.startswith(f"3 of 4 mask(s) written to {tmp_path / 'out'} with {weights}")
    assert err.count("\n") == 1 and err.startswith("error: cannot read image") and name in err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]
