"""tools/docker_check.py's own parts that need no engine: the scenes it predicts and how it compares the masks of
the inference image with the host's (the check itself runs in the template's CI: make docker-check)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tools.docker_check import TOLERANCE, compare, write_scenes


def masks(folder: Path, labels: np.ndarray, probabilities: np.ndarray | None = None) -> Path:
    """A prediction folder of one scene: its label map and, for the host's, its probabilities [K, H, W]."""
    folder.mkdir()
    Image.fromarray(labels.astype(np.uint8)).save(folder / "scene.png")
    if probabilities is not None:
        tifffile.imwrite(folder / "scene_prob.tif", probabilities.astype(np.float32), photometric="minisblack")
    return folder


def test_masks_may_differ_only_within_the_tolerance_of_the_decision(tmp_path: Path) -> None:
    probabilities = np.full((1, 4, 5), 0.9)
    probabilities[0, 0, 0] = 0.5 + TOLERANCE / 2  # a pixel that float rounding may put on either side
    labels = np.where(probabilities[0] > 0.5, 255, 0)
    host = masks(tmp_path / "host", labels, probabilities)
    assert compare(host, masks(tmp_path / "same", labels)) == (0, 20)
    flipped = labels.copy()
    flipped[0, 0] = 0
    assert compare(host, masks(tmp_path / "near", flipped)) == (1, 20)
    flipped[3, 4] = 0  # a confident pixel: a real difference
    with pytest.raises(AssertionError, match="scene.png: masks differ away from the decision"):
        compare(host, masks(tmp_path / "far", flipped))


def test_multiclass_masks_may_differ_where_two_classes_tie(tmp_path: Path) -> None:
    probabilities = np.zeros((3, 2, 2))
    probabilities[:, 0, 0] = [0.1, 0.45, 0.45]  # a tie between classes 1 and 2
    probabilities[:, 1, 1] = [0.8, 0.1, 0.1]
    labels = probabilities.argmax(0)
    host = masks(tmp_path / "host", labels, probabilities)
    tie, confident = labels.copy(), labels.copy()
    tie[0, 0], confident[1, 1] = 2 if labels[0, 0] == 1 else 1, 2
    assert compare(host, masks(tmp_path / "tie", tie)) == (1, 4)
    with pytest.raises(AssertionError):
        compare(host, masks(tmp_path / "confident", confident))


def test_missing_masks_fail(tmp_path: Path) -> None:
    host = masks(tmp_path / "host", np.zeros((2, 2)), np.zeros((1, 2, 2)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssertionError, match="not the same masks written"):
        compare(host, tmp_path / "empty")


def test_scenes_are_pngs_of_a_size_that_needs_padding(tmp_path: Path) -> None:
    write_scenes(tmp_path / "scenes", count=2, size=70)
    names = sorted(path.name for path in (tmp_path / "scenes").iterdir())
    assert names == ["scene_0.png", "scene_1.png"]
    image = np.asarray(Image.open(tmp_path / "scenes" / "scene_0.png"))
    assert image.shape[:2] == (70, 70) and image.dtype == np.uint8 and image.std() > 0
