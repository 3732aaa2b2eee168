"""Convolution blocks of the U-Net: a 3x3 conv block, and two ways to double the resolution.

Every block is conv -> batch norm -> activation -> dropout, so the U-Net reads as a stack of the same unit.
``activ`` is a class (``nn.ReLU``), not an instance, so that each block owns its own module and the model pickles.
"""

from torch import nn


class ConvLayer(nn.Sequential):
    """3x3 convolution, padded so that stride 1 keeps the size and stride 2 halves it."""

    def __init__(
        self, ch_in: int, ch_out: int, stride: int = 1, dropout: float = 0.0, activ: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__(
            nn.Conv2d(ch_in, ch_out, kernel_size=3, stride=stride, padding=1, bias=False),
            *_norm_activ_drop(ch_out, dropout, activ),
        )


class DeconvLayer(nn.Sequential):
    """Doubles height and width with a convolution to 4x channels and a pixel shuffle.

    Pixel shuffle upsampling has no checkerboard artefacts, unlike a transposed convolution with stride 2.
    """

    def __init__(self, ch_in: int, ch_out: int, dropout: float = 0.0, activ: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(
            nn.Conv2d(ch_in, ch_out * 4, kernel_size=3, padding=1, bias=False),
            nn.PixelShuffle(2),
            *_norm_activ_drop(ch_out, dropout, activ),
        )


class TransConvLayer(nn.Sequential):
    """Doubles height and width with a transposed convolution.

    With kernel 3, stride 2 and padding 1 the output is 2H - 1; ``output_padding=1`` adds the missing row and
    column, so the output is exactly twice the input, as the skip connection needs.
    """

    def __init__(self, ch_in: int, ch_out: int, dropout: float = 0.0, activ: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(
            nn.ConvTranspose2d(ch_in, ch_out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False),
            *_norm_activ_drop(ch_out, dropout, activ),
        )


def _norm_activ_drop(channels: int, dropout: float, activ: type[nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.BatchNorm2d(channels), activ()]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return layers
