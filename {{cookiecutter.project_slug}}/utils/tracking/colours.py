"""Images and label maps as RGB pictures, the same in TensorBoard and in notebooks/explore_runs.ipynb.

An input of 1 or 2 bands shows its first band in grey, of 3 bands or more its first three as RGB (each sample scaled
to [0, 1]). Masks and predictions show the label map of the task: binary foreground white, multiclass each class in a
fixed colour of ``PALETTE`` (class 0 black), multilabel the first three labels as the red, green and blue channels;
ignored pixels (target < 0) are mid grey.
"""

import torch

# Class colours (RGB in [0, 1]) of multiclass label maps: black background, then well-separated hues; classes past
# the end reuse them in order. Mid grey is kept for ignored pixels.
PALETTE = torch.tensor(
    [
        [0.0, 0.0, 0.0],
        [0.90, 0.10, 0.10],
        [0.10, 0.70, 0.20],
        [0.15, 0.35, 0.95],
        [1.00, 0.85, 0.10],
        [0.80, 0.20, 0.85],
        [0.10, 0.85, 0.85],
        [1.00, 0.55, 0.10],
        [0.55, 0.35, 0.15],
        [1.00, 1.00, 1.00],
    ]
)
IGNORED_GREY = 0.5
# Multilabel maps show their first three labels as these channels (a pixel of labels 0 and 1 is yellow).
LABEL_CHANNELS = ("red", "green", "blue")


def image_colours(images: torch.Tensor) -> torch.Tensor:
    """float32 RGB ``[N, 3, H, W]`` in [0, 1] of images ``[N, C, H, W]``: the first band in grey (C < 3) or the first
    three as RGB, each sample scaled by its own minimum and maximum (non-finite values shown as the minimum)."""
    images = images.detach().float().cpu()
    images = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    finite = torch.isfinite(images)
    low = torch.where(finite, images, torch.inf).amin(dim=(1, 2, 3), keepdim=True)
    high = torch.where(finite, images, -torch.inf).amax(dim=(1, 2, 3), keepdim=True)
    low, high = low.nan_to_num(0.0, posinf=0.0), high.nan_to_num(0.0, neginf=0.0)  # a sample with no finite value
    return torch.where(finite, (images - low) / (high - low).clamp_min(1e-8), 0.0).clamp(0, 1)


def label_colours(labels: torch.Tensor, task: str) -> torch.Tensor:
    """float32 RGB ``[N, 3, H, W]`` in [0, 1] of label maps: targets or ``utils.metrics.predicted_labels`` of ``task``.

    binary ``[N, 1, H, W]`` 0/1: black/white; multiclass ``[N, 1, H, W]`` class indices: ``PALETTE`` colours;
    multilabel ``[N, K, H, W]`` 0/1: labels 0, 1, 2 as red, green, blue. Pixels < 0 (ignored) are mid grey.
    """
    labels = labels.detach().cpu()
    ignored = (labels < 0).any(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    if task == "multiclass":
        index = labels[:, 0].long().clamp_min(0) % len(PALETTE)
        colours = PALETTE[index].permute(0, 3, 1, 2)  # [N, H, W, 3] -> [N, 3, H, W]
    elif task == "multilabel":
        colours = (labels[:, :3] > 0.5).float()
        colours = torch.cat([colours, colours.new_zeros(colours.shape[0], 3 - colours.shape[1], *colours.shape[2:])], 1)
    else:
        colours = (labels[:, :1] > 0.5).float().expand(-1, 3, -1, -1)
    return torch.where(ignored, IGNORED_GREY, colours)


def legend_colours(task: str, classes: list[str]) -> dict[str, tuple[float, float, float]]:
    """What each colour of :func:`label_colours` means, name -> RGB: binary the foreground (white), multiclass each
    class in its palette colour, multilabel the first three labels as red, green and blue; then ``ignored``."""
    if task == "multiclass":
        entries = {name: tuple(PALETTE[index % len(PALETTE)].tolist()) for index, name in enumerate(classes)}
    elif task == "multilabel":
        entries = {
            f"{name} ({channel})": tuple(float(i == index) for i in range(3))
            for index, (name, channel) in enumerate(zip(classes[:3], LABEL_CHANNELS, strict=False))
        }
    else:
        entries = {(classes or ["foreground"])[0]: (1.0, 1.0, 1.0)}
    return {**entries, "ignored": (IGNORED_GREY,) * 3}
