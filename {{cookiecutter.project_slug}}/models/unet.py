"""A recursive U-Net for segmentation.

The network is defined by one level that holds the next level inside it:
``level(x) = merge(cat(x, up(inner(down(x)))))``, with ``inner`` another level, ``n_recursions`` deep.
Each level halves the resolution and doubles the channels, so the deepest one works at
``H / 2**n_recursions`` with ``bulk_ch * 2**n_recursions`` channels.
"""

import torch
from torch import Tensor, nn

from layers.conv import ConvLayer, DeconvLayer, TransConvLayer


class _Level(nn.Module):
    """One resolution level: downsample, run the inner level, upsample, merge with the skip connection."""

    def __init__(self, ch: int, depth: int, use_shuffle: bool, dropout: float, activ: type[nn.Module]) -> None:
        super().__init__()
        self.down = ConvLayer(ch, 2 * ch, stride=2, dropout=dropout, activ=activ)
        self.inner: nn.Module
        if depth > 1:
            self.inner = _Level(2 * ch, depth - 1, use_shuffle, dropout, activ)
        else:
            self.inner = ConvLayer(2 * ch, 2 * ch, dropout=dropout, activ=activ)
        upsample = DeconvLayer if use_shuffle else TransConvLayer
        self.up = upsample(2 * ch, ch, dropout=dropout, activ=activ)
        self.merge = ConvLayer(2 * ch, ch, dropout=dropout, activ=activ)

    def forward(self, x: Tensor) -> Tensor:  # pylint: disable=missing-function-docstring
        return self.merge(torch.cat([x, self.up(self.inner(self.down(x)))], dim=1))


class UNet(nn.Module):
    """U-Net returning one logit per pixel and output channel (apply a sigmoid for probabilities).

    Args:
        ch_in: channels of the input image (1 for grey, 3 for RGB).
        ch_out: channels of the output (1 for a binary mask).
        bulk_ch: channels at full resolution; doubled at every level.
        n_recursions: number of levels; height and width must be divisible by ``2**n_recursions``.
        use_shuffle: upsample with pixel shuffle (True) or a transposed convolution (False).
        dropout: channel dropout after every block (0 disables it).
        activ: activation class, e.g. ``nn.ReLU`` or ``nn.GELU``.
    """

    def __init__(
        self,
        ch_in: int = 1,
        ch_out: int = 1,
        bulk_ch: int = 32,
        n_recursions: int = 4,
        use_shuffle: bool = True,
        dropout: float = 0.0,
        activ: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        for name, value in (("ch_in", ch_in), ("ch_out", ch_out), ("bulk_ch", bulk_ch), ("n_recursions", n_recursions)):
            if value < 1:
                raise ValueError(f"UNet: {name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout}")
        self.divisor = 2**n_recursions
        self.head = ConvLayer(ch_in, bulk_ch, activ=activ)
        self.body = _Level(bulk_ch, n_recursions, use_shuffle, dropout, activ)
        self.tail = nn.Conv2d(bulk_ch, ch_out, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map images [N, ch_in, H, W] to logits [N, ch_out, H, W]."""
        height, width = x.shape[-2], x.shape[-1]
        if height % self.divisor != 0 or width % self.divisor != 0:
            raise ValueError(
                f"UNet: input size {height}x{width} is not divisible by 2**n_recursions = {self.divisor}; "
                f"pad or crop the images to a multiple of {self.divisor}"
            )
        return self.tail(self.body(self.head(x)))
