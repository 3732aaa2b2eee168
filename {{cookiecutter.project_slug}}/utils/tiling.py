"""Inference on scenes of any size: whole images padded to the model's divisor, or sliding windows (MONAI).

A whole-image pass holds the network's activations for every pixel at once (about 0.37 GB per megapixel for the
default U-Net); sliding windows bound them by the tile, so that memory grows only with the scene's own input and
output arrays. MONAI is imported inside :func:`sliding_window` only: its import takes seconds and must not slow
train.py.
"""

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(image: torch.Tensor, divisor: int) -> torch.Tensor:
    """``image`` [N, C, H, W] padded at the bottom and right to multiples of ``divisor``.

    Reflect where the image is large enough (a black border would look like background and bias the edges),
    replicate where it is not (reflect needs a pad smaller than the side).
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((parameter.device for parameter in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def sliding_window(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | None = 512,
    overlap: float = 0.25,
    divisor: int | None = None,
    device: torch.device | None = None,
    sw_batch_size: int = 4,
) -> torch.Tensor:
    """Float32 logits [1, K, H, W] on the CPU of ``image`` [1, C, H, W] (any device; float32).

    ``tile`` None or 0: one pass over the whole image. Otherwise windows of ``tile`` x ``tile`` (smaller sides of
    the scene: the side itself, padded to the divisor) overlapping by ``overlap`` of a tile, blended with Gaussian
    weights (a window's centre counts more than its edges, where the network sees less context). Windows run on
    ``device`` (default: the model's), ``sw_batch_size`` at a time; the stitched logits stay on the CPU.
    ``divisor`` defaults to ``model.divisor`` (1 without one).

    Raises:
        ValueError: ``tile`` is not a positive multiple of the divisor, ``overlap`` not in [0, 1), or ``image`` not
            [1, C, H, W].
    """
    divisor = int(divisor or getattr(model, "divisor", 1))
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"sliding_window takes one image [1, C, H, W], got {list(image.shape)}")
    if tile and (tile < 0 or tile % divisor):
        raise ValueError(
            f"tile {tile} is not a multiple of the model's divisor {divisor} (e.g. {tile_for(tile, divisor)})"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    device = device or model_device(model)
    height, width = image.shape[-2:]
    padded = pad_to_multiple(image.float(), divisor)  # a no-op view for sizes that divide already
    if not tile or (padded.shape[-2] <= tile and padded.shape[-1] <= tile):
        return model(padded.to(device)).float()[..., :height, :width].cpu()
    import monai.inferers  # pylint: disable=import-outside-toplevel  # 3 s: predict and evaluate only

    roi = (min(tile, padded.shape[-2]), min(tile, padded.shape[-1]))  # multiples of the divisor, like the scene
    logits = monai.inferers.sliding_window_inference(
        padded,
        roi,
        sw_batch_size,
        lambda windows: model(windows).float(),
        overlap=overlap,
        mode="gaussian",
        sw_device=device,
        device="cpu",
    )
    return logits[..., :height, :width].contiguous()  # type: ignore[index]


def tile_for(tile: int, divisor: int) -> int:
    """The multiple of ``divisor`` nearest to ``tile`` (at least one divisor): what to suggest for a bad --tile."""
    return max(divisor, round(tile / divisor) * divisor)
