"""utils/onnx_inference.py and utils/outputs.py against the torch path they replace: MONAI's Gaussian sliding window
(utils/tiling.sliding_window) on one model, the padding, the normalisation and the label maps and probabilities."""

import numpy as np
import pytest
import torch

from utils.data.normalization import normalize as torch_normalize
from utils.onnx_inference import normalize, pad_to_multiple, sliding_window
from utils.outputs import label_array, probability_array
from utils.prediction import label_map, probability_map
from utils.tiling import pad_to_multiple as torch_pad
from utils.tiling import sliding_window as torch_sliding_window

TOLERANCE = 1e-4  # on logits; float32 sums in another order differ by ~1e-7


def model() -> torch.nn.Module:
    """Zero-padded convolutions: a window's edges differ from its centre, so a wrong blend or window shows."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 5, padding=2), torch.nn.Tanh(), torch.nn.Conv2d(3, 3, 3, padding=1)
    ).eval()


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [
        (20, 30, 64, 0.25),  # within a tile: one pass
        (5, 3, 16, 0.25),  # under the divisor: replicate padding
        (37, 53, 32, 0.25),  # not multiples of the divisor, several windows
        (100, 70, 32, 0.5),
        (130, 97, 48, 0.25),  # the last windows moved back
        (64, 40, 32, 0.0),  # no overlap; a side of one window
    ],
)
def test_sliding_window_gives_monais_blend(height: int, width: int, tile: int, overlap: float) -> None:
    net = model()
    image = np.random.default_rng(height).standard_normal((1, 2, height, width), dtype=np.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    ours = sliding_window(run, image, tile, overlap, divisor=8)
    expected = torch_sliding_window(net, torch.from_numpy(image), tile, overlap, divisor=8).numpy()
    assert ours.shape == expected.shape == (1, 3, height, width)
    assert np.abs(ours - expected).max() < TOLERANCE


@pytest.mark.parametrize(("height", "width"), [(13, 14), (3, 2), (9, 30), (16, 8)])
def test_padding_is_torchs(height: int, width: int) -> None:
    image = np.random.default_rng(0).standard_normal((1, 2, height, width), dtype=np.float32)
    np.testing.assert_array_equal(pad_to_multiple(image, 8), torch_pad(torch.from_numpy(image), 8).numpy())


@pytest.mark.parametrize(
    "stats",
    [
        None,
        {"method": "meanstd", "mean": [0.4, 0.5], "std": [0.2, 0.0]},  # a constant band: shifted only
        {"method": "percentile", "low": [0.1, 0.3], "high": [0.9, 0.3], "percentiles": [1.0, 99.0]},
    ],
)
def test_normalisation_is_torchs(stats: dict | None) -> None:
    image = np.random.default_rng(1).random((2, 7, 9)).astype(np.float32)
    expected = torch_normalize(torch.from_numpy(image), stats).numpy()
    np.testing.assert_allclose(normalize(image, stats), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("task", "classes"), [("binary", 1), ("multiclass", 4), ("multilabel", 3)])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_labels_and_probabilities_are_torchs(task: str, classes: int, threshold: float) -> None:
    logits = np.random.default_rng(2).normal(0, 3, (1, classes, 1030, 7)).astype(np.float32)  # 3 row chunks
    logits[0, 0, 0, :3] = [0.0, 200.0, -200.0]  # the threshold itself, and what exp would overflow on
    labels = label_array(logits, task, threshold)
    np.testing.assert_array_equal(labels, label_map(torch.from_numpy(logits), task, threshold))
    assert labels.dtype == np.uint8
    probabilities = probability_array(logits, task)
    assert probabilities.dtype == np.float32 and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities, probability_map(torch.from_numpy(logits), task), atol=1e-6)
