"""Convolution blocks of the U-Net: a 3x3 convolution block, and two ways to double the resolution.

Every block is conv -> batch norm -> activation -> dropout, so the U-Net reads as a stack of the same unit.
``activation`` is a class or factory (``nn.ReLU``, ``functools.partial(nn.LeakyReLU, 0.1)``), not an instance, so that
each block owns its own module.
"""

from collections.abc import Callable

from torch import nn


class ConvBlock(nn.Sequential):
    """3x3 convolution, padded so that stride 1 keeps the size and stride 2 halves it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dropout: float = 0.0,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            *_norm_activ_drop(out_channels, dropout, activation),
        )


class PixelShuffleUpsample(nn.Sequential):
    """Doubles height and width with a convolution to 4x channels and a pixel shuffle.

    Pixel shuffle upsampling has no checkerboard artefacts, unlike a transposed convolution with stride 2.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dropout: float = 0.0, activation: Callable[[], nn.Module] = nn.ReLU
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels * 4, kernel_size=3, padding=1, bias=False),
            nn.PixelShuffle(2),
            *_norm_activ_drop(out_channels, dropout, activation),
        )


class TransposedConvUpsample(nn.Sequential):
    """Doubles height and width with a transposed convolution.

    With kernel 3, stride 2 and padding 1 the output is 2H - 1; ``output_padding=1`` adds the missing row and
    column, so the output is exactly twice the input, as the skip connection needs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dropout: float = 0.0, activation: Callable[[], nn.Module] = nn.ReLU
    ) -> None:
        super().__init__(
            nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False
            ),
            *_norm_activ_drop(out_channels, dropout, activation),
        )


def _norm_activ_drop(channels: int, dropout: float, activation: Callable[[], nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.BatchNorm2d(channels), activation()]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return layers
