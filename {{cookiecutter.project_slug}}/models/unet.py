"""A recursive U-Net for segmentation (Ronneberger et al. 2015, https://arxiv.org/abs/1505.04597).

The network is defined by one level that holds the next level inside it:
``level(x) = merge(cat(x, up(inner(down(x)))))``, with ``inner`` another level, ``depth`` deep.
Each level halves the resolution and doubles the channels, so the deepest one works at ``H / 2**depth`` with
``base_channels * 2**depth`` channels.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from layers.conv import ConvBlock, PixelShuffleUpsample, TransposedConvUpsample

UPSAMPLING = {"pixel_shuffle": PixelShuffleUpsample, "transposed": TransposedConvUpsample}


class _Level(nn.Module):
    """One resolution level: downsample, run the inner level, upsample, merge with the skip connection."""

    def __init__(
        self, channels: int, depth: int, upsampling: str, dropout: float, activation: Callable[[], nn.Module]
    ) -> None:
        super().__init__()
        self.down = ConvBlock(channels, 2 * channels, stride=2, dropout=dropout, activation=activation)
        self.inner: nn.Module
        if depth > 1:
            self.inner = _Level(2 * channels, depth - 1, upsampling, dropout, activation)
        else:
            self.inner = ConvBlock(2 * channels, 2 * channels, dropout=dropout, activation=activation)
        self.up = UPSAMPLING[upsampling](2 * channels, channels, dropout=dropout, activation=activation)
        self.merge = ConvBlock(2 * channels, channels, dropout=dropout, activation=activation)

    def forward(self, x: Tensor) -> Tensor:  # pylint: disable=missing-function-docstring
        return self.merge(torch.cat([x, self.up(self.inner(self.down(x)))], dim=1))


class UNet(nn.Module):
    """U-Net returning one logit per pixel and output channel (a sigmoid or softmax gives probabilities).

    Args:
        in_channels: bands of the input image (1 for grey, 3 for RGB, 12 for a multispectral tile).
        out_channels: output channels (1 for a binary mask).
        base_channels: channels at full resolution; doubled at every level.
        depth: number of levels; height and width must be divisible by ``2**depth`` (``divisor``).
        upsampling: ``"pixel_shuffle"`` (no checkerboard artefacts) or ``"transposed"`` (a transposed convolution).
        dropout: channel dropout after every block, in [0, 1) (0 disables it).
        activation: a class or factory of the activation module, e.g. ``nn.ReLU`` or ``partial(nn.LeakyReLU, 0.1)``.

    Raises:
        ValueError: a size below 1, an unknown upsampling, a dropout outside [0, 1).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        upsampling: str = "pixel_shuffle",
        dropout: float = 0.0,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        sizes = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base_channels": base_channels,
            "depth": depth,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"UNet: {name} must be >= 1, got {value}")
        if upsampling not in UPSAMPLING:
            raise ValueError(f"UNet: upsampling must be one of {list(UPSAMPLING)}, got {upsampling!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout}")
        self.divisor = 2**depth
        self.head = ConvBlock(in_channels, base_channels, activation=activation)
        self.body = _Level(base_channels, depth, upsampling, dropout, activation)
        self.tail = nn.Conv2d(base_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[N, in_channels, H, W]`` to logits ``[N, out_channels, H, W]``.

        Raises:
            ValueError: H or W not divisible by ``2**depth``.
        """
        height, width = x.shape[-2], x.shape[-1]
        if height % self.divisor != 0 or width % self.divisor != 0:
            raise ValueError(
                f"UNet: input size {height}x{width} is not divisible by 2**depth = {self.divisor}; "
                f"pad or crop the images to a multiple of {self.divisor}"
            )
        return self.tail(self.body(self.head(x)))
