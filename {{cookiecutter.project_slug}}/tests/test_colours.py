"""Label maps and images as RGB pictures (TensorBoard's panels and the notebook's grid), and what each colour means."""

import torch

from utils.data.targets import IGNORE
from utils.tracking.colours import IGNORED_GREY, PALETTE, image_colours, label_colours, legend_colours


def test_label_maps_show_the_task():
    """Masks and predictions as colours: binary white, multiclass the palette, multilabel RGB, ignored grey; inputs of
    many bands show their first three as RGB."""
    binary = torch.tensor([[[[0.0, 1.0, float(IGNORE)]]]])
    assert label_colours(binary, "binary")[0, :, 0].T.tolist() == [[0.0] * 3, [1.0] * 3, [IGNORED_GREY] * 3]
    classes = torch.tensor([[[[0, 1, 2, IGNORE]]]])
    colours = label_colours(classes, "multiclass")
    assert colours.shape == (1, 3, 1, 4)
    torch.testing.assert_close(colours[0, :, 0, :3].T, PALETTE[:3])
    assert len({tuple(c) for c in PALETTE.tolist()}) == len(PALETTE)  # every class its own colour
    labels = torch.zeros(1, 4, 1, 3)
    labels[0, 0, 0, 0] = labels[0, 2, 0, 1] = labels[0, 3, 0, 2] = 1  # label 3 is past the three shown
    assert label_colours(labels, "multilabel")[0, :, 0].T.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    image = torch.arange(12 * 4, dtype=torch.float32).view(1, 12, 2, 2)
    rgb = image_colours(image)
    assert rgb.shape == (1, 3, 2, 2) and rgb.min() == 0 and rgb.max() == 1 and rgb[0, 2, 1, 1] == 1
    assert torch.equal(image_colours(image[:, :1])[0, 0], image_colours(image[:, :1])[0, 2])  # one band: grey


def test_the_legend_names_the_colours_that_label_colours_draws():
    names = ["background", "road", "building"]
    legend = legend_colours("multiclass", names)
    assert list(legend) == [*names, "ignored"]
    drawn = label_colours(torch.tensor([[[[0, 1, 2, IGNORE]]]]), "multiclass")[0, :, 0].T.tolist()
    assert drawn == [list(colour) for colour in legend.values()]

    assert legend_colours("binary", ["lesion"]) == {"lesion": (1.0, 1.0, 1.0), "ignored": (IGNORED_GREY,) * 3}
    assert legend_colours("binary", []) == {"foreground": (1.0, 1.0, 1.0), "ignored": (IGNORED_GREY,) * 3}
    # multilabel: the first three labels are the red, green and blue channels; the others have no colour
    assert list(legend_colours("multilabel", ["a", "b", "c", "d"]).items()) == [
        ("a (red)", (1.0, 0.0, 0.0)),
        ("b (green)", (0.0, 1.0, 0.0)),
        ("c (blue)", (0.0, 0.0, 1.0)),
        ("ignored", (IGNORED_GREY,) * 3),
    ]
