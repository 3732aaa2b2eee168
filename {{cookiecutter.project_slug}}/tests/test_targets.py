"""MaskEncoder: raw mask values -> binary, multiclass and multilabel targets; bad values refused with the file."""

import json
import pickle

import pytest
import torch

from utils.data.images import DataError
from utils.data.targets import IGNORE, MaskEncoder, parse_mask_value


def grid(*rows: list, dtype=torch.int64) -> torch.Tensor:
    """A one-channel mask [1, H, W] from rows of values."""
    return torch.tensor(rows, dtype=dtype)[None]


def test_binary_any_nonzero_channel_is_foreground():
    encoder = MaskEncoder("binary", 1)
    assert MaskEncoder("binary", 2)(grid([0, 255]), "m").tolist() == [[[0.0, 1.0]]]  # 2 classes: the same
    for mask in (grid([0, 255], [255, 0]), grid([0, 1], [1, 0]), grid([0.0, 0.5], [1.0, 0.0], dtype=torch.float32)):
        target = encoder(mask, "m.png")
        assert target.dtype == torch.float32 and target.shape == (1, 2, 2)
        assert target.tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    colour = torch.zeros(3, 2, 2, dtype=torch.int64)
    colour[2, 1, 1] = 200  # only blue set: still foreground
    assert encoder(colour, "c.png").tolist() == [[[0.0, 0.0], [0.0, 1.0]]]


def test_multiclass_indices_with_ignore_index():
    encoder = MaskEncoder("multiclass", 3, ignore_index=255)
    target = encoder(grid([0, 1, 2], [255, 2, 0]), "m.png")
    assert target.dtype == torch.int64 and target.shape == (1, 2, 3)
    assert target.tolist() == [[[0, 1, 2], [IGNORE, 2, 0]]]
    # float masks (e.g. a float .npy) with integral values work the same
    assert encoder(grid([0.0, 2.0], [255.0, 1.0], dtype=torch.float32), "f.npy").tolist() == [[[0, 2], [IGNORE, 1]]]


def test_multiclass_value_outside_classes_names_file_value_and_settings():
    encoder = MaskEncoder("multiclass", 3)
    with pytest.raises(DataError) as info:
        encoder(grid([0, 1, 7], [7, 9, 0]), "data/masks/tile_3.png")
    message = str(info.value)
    assert "data/masks/tile_3.png" in message and "value 7" in message and "(0..2)" in message
    assert "in 2 pixels" in message and "other bad values: 9" in message  # the first bad value in raster order first
    for setting in ("MASK_VALUES", "IGNORE_INDEX", "CLASSES"):
        assert setting in message
    with pytest.raises(DataError, match="value 255"):  # no IGNORE_INDEX: 255 is not a class
        encoder(grid([0, 255]), "x")
    with pytest.raises(DataError, match="value 0.5"):
        encoder(grid([0.0, 0.5], dtype=torch.float32), "x")
    with pytest.raises(DataError, match="value nan"):
        encoder(grid([float("nan"), 1.0], dtype=torch.float32), "x")
    with pytest.raises(DataError, match="3 channels"):  # a colour mask without MASK_VALUES
        encoder(torch.zeros(3, 2, 2, dtype=torch.int64), "rgb.png")


def test_colour_mapping_and_colour_ignore():
    mapping = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2}
    encoder = MaskEncoder("multiclass", 3, mask_values=mapping, ignore_index=(255, 255, 255))
    colours = [[(0, 0, 0), (255, 0, 0)], [(0, 255, 0), (255, 255, 255)]]
    mask = torch.tensor(colours, dtype=torch.int64).permute(2, 0, 1)  # [3, H, W]
    assert encoder(mask, "c.png").tolist() == [[[0, 1], [2, IGNORE]]]
    mask[:, 0, 0] = torch.tensor([0, 0, 255])  # blue: not mapped
    with pytest.raises(DataError, match=r"c\.png holds value 0,0,255 .*MASK_VALUES key"):
        encoder(mask, "c.png")
    with pytest.raises(DataError, match="1 channels"):
        encoder(grid([0, 1]), "grey.png")


def test_value_mapping_survives_a_json_round_trip():
    """MASK_VALUES {0: 0, 128: 1, 255: 2} saved in a config arrives with string keys; it maps the same."""
    mask = grid([0, 128], [255, 128])
    original = MaskEncoder("multiclass", 3, mask_values={0: 0, 128: 1, 255: 2})
    restored = MaskEncoder("multiclass", 3, mask_values=json.loads(json.dumps({0: 0, 128: 1, 255: 2})))
    assert original(mask, "m").tolist() == restored(mask, "m").tolist() == [[[0, 1], [2, 1]]]
    colour = json.loads(json.dumps({"255,0,0": 1, "0,0,0": 0}))
    encoder = MaskEncoder("binary", 1, mask_values=colour)  # binary with colours: red is the foreground
    mask = torch.tensor([[[255, 0]], [[0, 0]], [[0, 0]]])
    target = encoder(mask, "m")
    assert target.dtype == torch.float32 and target.tolist() == [[[1.0, 0.0]]]
    with pytest.raises(DataError, match="value 64"):
        restored(grid([64]), "m")


def test_parse_mask_value_forms():
    assert parse_mask_value("128") == 128 and parse_mask_value(128.0) == 128 and parse_mask_value("0.5") == 0.5
    assert parse_mask_value("255,0,0") == parse_mask_value("(255, 0, 0)") == parse_mask_value([255, 0, 0])
    assert parse_mask_value((1, 2, 3)) == (1, 2, 3)
    for bad in ("red", (1, 2), (1.5, 0, 0), True, None):
        with pytest.raises(ValueError):
            parse_mask_value(bad)


def test_multilabel_channels():
    encoder = MaskEncoder("multilabel", 3)
    mask = torch.zeros(3, 2, 2, dtype=torch.int64)
    mask[0, 0, 0], mask[1, 0, 0], mask[2, 1, 1] = 255, 1, 7
    target = encoder(mask, "m.npy")
    assert target.dtype == torch.float32 and target.shape == (3, 2, 2)
    assert target.sum((1, 2)).tolist() == [1.0, 1.0, 1.0] and target[:, 0, 0].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(DataError, match=r"m\.npy has 1 channels but CLASSES names 3"):
        encoder(grid([0, 1]), "m.npy")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("segmentation", 2), "TASK must be one of"),
        (("binary", 3), "1 .the foreground. or 2"),
        (("multiclass", 1), "at least 2"),
        (("multiclass", 3, {0: 0, 128: 3}), "not a class index 0..2"),
        (("binary", 1, {0: 0, 255: 2}), "not a class index 0..1"),
        (("multiclass", 3, {0: 0, "255,0,0": 1}), "mixes colours"),
        (("multiclass", 3, {0: 0, 1: 1}, (255, 255, 255)), "same kind"),
        (("multiclass", 3, {0: 0, 255: 1}, 255), "also a MASK_VALUES key"),
        (("multiclass", 3, None, "255,255,255"), "is a colour"),
        (("binary", 1, None, 255), "multiclass masks only"),
        (("multilabel", 2, {0: 0}), "does not apply to multilabel"),
        (("multiclass", 3, {"blue": 1}), "neither a number"),
        (("multiclass", 3, [0, 1]), "dict"),
    ],
)
def test_contradicting_settings_are_refused_at_construction(args, words):
    with pytest.raises(ValueError, match=words):
        MaskEncoder(*args)


def test_vectorised_on_a_large_mask_and_picklable():
    """A 1024x1024 colour mask maps in one pass (no per-pixel Python), and the encoder pickles for workers."""
    palette = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]])
    classes = torch.randint(0, 4, (1024, 1024), generator=torch.Generator().manual_seed(0))
    mask = palette[classes].permute(2, 0, 1)
    encoder = MaskEncoder("multiclass", 4, mask_values={tuple(colour.tolist()): i for i, colour in enumerate(palette)})
    encoder = pickle.loads(pickle.dumps(encoder))
    assert torch.equal(encoder(mask, "big.png")[0], classes)
