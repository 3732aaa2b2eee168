"""Hidden and system files are not data: macOS's ``._x.png`` beside the tiles, Synology's ``@eaDir/`` and zips'
``__MACOSX/`` are skipped by training, evaluation and predict folders, counted in one line; a file named is read."""

import logging
from pathlib import Path

import numpy as np
import pytest
from checkpoints import save_checkpoint
from PIL import Image

import predict
from utils.data.folder import SegmentationFolder
from utils.data.system_files import is_system_file, skipped_line

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000)  # what macOS writes: not a PNG


def tiles(root: Path, count: int = 3) -> Path:
    """``count`` real image/mask pairs, each with macOS's ``._`` twin, plus ``.DS_Store`` and ``@eaDir/``."""
    for sub in ("images", "masks"):
        (root / sub / "@eaDir" / "0000.png").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / sub / "@eaDir" / "0000.png" / "SYNOFILE_THUMB_S.png")
        (root / sub / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        for index in range(count):
            Image.fromarray(np.full((16, 16), 40 * index, np.uint8)).save(root / sub / f"{index:04d}.png")
            (root / sub / f"._{index:04d}.png").write_bytes(APPLE_DOUBLE)
    return root


def test_the_rule(tmp_path: Path) -> None:
    for hidden in ("._0000.png", ".DS_Store", "@eaDir/0000.png/SYNOFILE_THUMB_M.jpg", "__MACOSX/x/._a.png", "a/.b/c"):
        assert is_system_file(hidden), hidden
    for data in ("0000.png", "scene.1/tile.png", "eaDir/x.png", "a/b_.png"):
        assert not is_system_file(data), data
    assert skipped_line(["._a.png"]) == "skipped 1 hidden or system file (._a.png)"
    line = skipped_line([f"._{n}.png" for n in range(5)], str(tmp_path))
    assert line == f"skipped 5 hidden or system files in {tmp_path} (._0.png, ._1.png, ._2.png, ...)"


def test_training_and_evaluation_folders_read_only_the_real_tiles_and_say_how_many_they_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tiles(tmp_path / "set")
    with caplog.at_level(logging.INFO, logger="project"):
        folder = SegmentationFolder(root)  # before: "cannot read image .../._0000.png"
    assert folder.stems() == ["0000", "0001", "0002"] and len(folder) == 3
    assert [record.getMessage() for record in caplog.records] == [
        f"skipped 6 hidden or system files in {root} (images/._0000.png, images/._0001.png, images/._0002.png, ...)"
    ]
    assert folder.skipped == [f"{sub}/._{n:04d}.png" for sub in ("images", "masks") for n in range(3)]
    assert [image.shape for image, _ in folder] == [(1, 16, 16)] * 3


def test_predict_skips_them_in_folders_and_patterns_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = save_checkpoint(tmp_path / "w.pt")
    images = tiles(tmp_path / "set") / "images"
    (images / "__MACOSX").mkdir()
    (images / "__MACOSX" / "._0000.png").write_bytes(APPLE_DOUBLE)
    status = predict.main(["-i", str(images), "-o", str(tmp_path / "out"), "--weights", str(weights), "--tile", "0"])
    out, err = capsys.readouterr()
    assert status == 0 and err == "", err  # before: an error per ._ file and exit 1
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert out.splitlines()[0].startswith(f"skipped 3 hidden or system files ({images / '._0000.png'}, ")
    # A recursive pattern: @eaDir's thumbnails and __MACOSX are skipped (glob itself leaves out ._ files there).
    skipped: list[Path] = []
    found = predict.find_inputs([f"{tmp_path}/set/**/*.png"], skipped)
    assert [path.name for path in found] == ["0000.png", "0001.png", "0002.png"] * 2
    assert [path.name for path in skipped] == ["SYNOFILE_THUMB_S.png"] * 2
    # A hidden folder that the user names is theirs; a hidden file named on the command line is read as asked.
    (tmp_path / ".cache").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / ".cache" / "a.png")
    assert predict.find_inputs([str(tmp_path / ".cache"), str(images / "._0001.png")]) == [
        tmp_path / ".cache" / "a.png",
        images / "._0001.png",
    ]
    assert predict.find_inputs([f"{tmp_path}/.cache/*.png"]) == [tmp_path / ".cache" / "a.png"]
