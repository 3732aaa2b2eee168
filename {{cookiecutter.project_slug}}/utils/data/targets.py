"""Turn a mask's raw values into the training target of the task (binary, multiclass or multilabel).

A dataset returns masks as read, ``[M, H, W]`` int64 or float32 (M=1 for index/grey/palette masks, M=3 for RGB colour
masks, M=K for multilabel arrays); it does not know the task. ``MaskEncoder`` maps them to the target the losses and
metrics see:

- binary:     float32 ``[1, H, W]`` in {0, 1}
- multiclass: int64   ``[1, H, W]`` in 0..K-1
- multilabel: float32 ``[K, H, W]`` in {0, 1}

and ``IGNORE`` (-1) where a pixel counts in neither loss nor metrics (IGNORE_INDEX here; padding and no-data later).
Every mapping is vectorised: one pass of tensor operations per mask, whatever its size.

A binary or multilabel pixel is set where its value is above the threshold: 0 by default (any value > 0, so 0/1,
0/255, instance labels 1..N and float masks all work), MASK_THRESHOLD when set (e.g. 127 for 0/255 masks saved as
JPEG, whose compression leaves noise of a few grey levels near every edge). Masks in a lossy format are refused
unless MASK_THRESHOLD is set, and always for multiclass and MASK_VALUES masks: noise there makes wrong classes,
which no threshold undoes (:meth:`MaskEncoder.check_lossy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.data.images import DataError

__all__ = ["IGNORE", "TASKS", "MaskEncoder", "parse_mask_value"]

IGNORE = -1
TASKS = ("binary", "multiclass", "multilabel")

# Colours are packed into one int64 (r << 42 | g << 21 | b) so that a colour lookup is a scalar lookup; 21 bits per
# channel hold 8- and 16-bit colours alike.
_BITS = 21
_CHANNEL_MAX = (1 << _BITS) - 1

MaskValue = float | int | tuple[int, int, int]


def parse_mask_value(key: Any) -> MaskValue:
    """A MASK_VALUES key or IGNORE_INDEX as a number or an ``(r, g, b)`` tuple.

    Accepts ints, floats, 3-sequences and their string forms after a JSON round trip ("128", "0.5", "255,0,0",
    "(255, 0, 0)"). Raises ValueError for anything else.
    """
    if isinstance(key, str):
        parts = [part.strip() for part in key.strip().strip("()[]").split(",")]
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"mask value {key!r} is neither a number nor an 'r,g,b' colour") from None
        key = numbers[0] if len(numbers) == 1 else tuple(numbers)
    if isinstance(key, bool) or not isinstance(key, int | float | tuple | list):
        raise ValueError(f"mask value {key!r} is neither a number nor an (r, g, b) colour")
    if isinstance(key, tuple | list):
        if len(key) != 3 or not all(_is_int(value) and 0 <= value <= _CHANNEL_MAX for value in key):
            raise ValueError(f"colour {key!r} must be three integers (r, g, b) >= 0")
        return tuple(int(value) for value in key)
    return int(key) if _is_int(key) else float(key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()


def _show(value: MaskValue) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _text(pixel: list[float]) -> str:
    """A pixel's channel values as "7" or "255,0,0" (whole floats without ".0")."""
    return ",".join(str(int(v)) if float(v).is_integer() else str(v) for v in pixel)


class MaskEncoder:
    """Map raw masks ``[M, H, W]`` to targets (see the module docstring); build it once, call it per sample.

    Args:
        task: "binary", "multiclass" or "multilabel".
        num_classes: K = len(CLASSES): >= 2 for multiclass, >= 1 for multilabel; binary takes 1 (the foreground)
            or 2 (background, foreground), the same either way.
        mask_values: MASK_VALUES, {mask value or (r, g, b) colour: class index}, for binary (class 0 or 1) and
            multiclass (class 0..K-1) masks; keys may be strings ("128", "255,0,0"). Every value a mask holds must
            then be a key (or ``ignore_index``). None: binary any channel > 0 is foreground, multiclass masks hold
            class indices.
        ignore_index: IGNORE_INDEX (multiclass only): a mask value, or a colour when mask_values uses colours,
            whose pixels become IGNORE.
        threshold: MASK_THRESHOLD (binary and multilabel only, not with mask_values): a value >= 0 above which a
            pixel is set; None is 0 (any value > 0), but lossy masks are then refused.

    Raises:
        ValueError: at construction, for settings that contradict each other (unknown task, class indices out of
            range, colours mixed with values, IGNORE_INDEX outside multiclass or also a MASK_VALUES key...).
        DataError: when called, for a mask that does not fit the settings; the message names ``source``.
    """

    def __init__(
        self,
        task: str,
        num_classes: int,
        mask_values: Mapping[Any, int] | None = None,
        ignore_index: Any = None,
        threshold: float | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
        if threshold is not None and (task == "multiclass" or mask_values):
            raise ValueError("MASK_THRESHOLD applies to binary and multilabel masks without MASK_VALUES; set it None")
        if threshold is not None and not (_is_number(threshold) and 0 <= threshold < float("inf")):
            raise ValueError(f"MASK_THRESHOLD must be a number >= 0 or None, got {threshold!r}")
        self.threshold = threshold
        minimum = {"binary": 1, "multiclass": 2, "multilabel": 1}[task]
        # binary: 1 (CLASSES names the foreground) or 2 (background and foreground) describe the same two values
        if not _is_int(num_classes) or num_classes < minimum or (task == "binary" and num_classes > 2):
            wanted = "1 (the foreground) or 2" if task == "binary" else f"at least {minimum}"
            raise ValueError(f"a {task} task needs {wanted} classes, got {num_classes!r}")
        if task == "multilabel" and mask_values:
            raise ValueError("MASK_VALUES does not apply to multilabel masks (one channel per class, > 0 is set)")
        if ignore_index is not None and task != "multiclass":
            raise ValueError(f"IGNORE_INDEX applies to multiclass masks only, not {task}")
        self.task, self.num_classes = task, int(num_classes)
        self.ignore_index = None if ignore_index is None else parse_mask_value(ignore_index)
        self.mask_values: dict[MaskValue, int] | None = None
        self.colour = isinstance(self.ignore_index, tuple)
        if mask_values:  # None or {}: no mapping
            self._set_mapping(mask_values)
        elif self.colour:
            raise ValueError(f"IGNORE_INDEX {self.ignore_index!r} is a colour: set MASK_VALUES for the other colours")

    def _set_mapping(self, mask_values: Mapping[Any, int]) -> None:
        if not isinstance(mask_values, Mapping):
            raise ValueError(f"MASK_VALUES must be a {{mask value: class index}} dict, got {mask_values!r}")
        top = 1 if self.task == "binary" else self.num_classes - 1
        mapping: dict[MaskValue, int] = {}
        for key, index in mask_values.items():
            value = parse_mask_value(key)
            if not _is_int(index) or not 0 <= index <= top:
                raise ValueError(f"MASK_VALUES maps {key!r} to {index!r}, not a class index 0..{top}")
            if value in mapping:
                raise ValueError(f"MASK_VALUES names {_show(value)} twice")
            mapping[value] = int(index)
        kinds = {isinstance(value, tuple) for value in mapping}
        if len(kinds) > 1:
            raise ValueError("MASK_VALUES mixes colours (r,g,b) and single values; use one kind")
        self.colour = kinds.pop()
        if self.ignore_index is not None:
            if isinstance(self.ignore_index, tuple) != self.colour:
                raise ValueError(f"IGNORE_INDEX {self.ignore_index!r} and the MASK_VALUES keys must be the same kind")
            if self.ignore_index in mapping:
                raise ValueError(f"IGNORE_INDEX {_show(self.ignore_index)} is also a MASK_VALUES key")
        self.mask_values = mapping
        keys = [_pack(key) if self.colour else float(key) for key in mapping]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        dtype = torch.int64 if self.colour else torch.float64
        self._keys = torch.tensor([keys[i] for i in order], dtype=dtype)
        self._classes = torch.tensor([list(mapping.values())[i] for i in order], dtype=torch.int64)

    def __call__(self, mask: torch.Tensor, source: str) -> torch.Tensor:
        """The target of ``mask`` ``[M, H, W]`` (see the module docstring); ``source`` names it in errors."""
        mask = torch.as_tensor(mask)
        if not mask.is_floating_point():
            mask = mask.to(torch.int64)  # uint8/bool/int32 inputs compare and pack like the int64 of the contract
        if mask.ndim != 3:
            raise DataError(f"mask {source} has shape {tuple(mask.shape)}, expected [M, H, W]")
        if self.task == "multilabel":
            if mask.shape[0] != self.num_classes:
                raise DataError(
                    f"mask {source} has {mask.shape[0]} channels but CLASSES names {self.num_classes} labels; a "
                    "multilabel mask needs one channel per class"
                )
            return (mask > (self.threshold or 0)).to(torch.float32)
        if self.mask_values is not None:
            classes = self._lookup(mask, source)
        elif self.task == "binary":
            return (mask > (self.threshold or 0)).any(0, keepdim=True).to(torch.float32)
        else:
            classes = self._indices(mask, source)
        return classes.to(torch.float32) if self.task == "binary" else classes

    def check_lossy(self, lossy: Mapping[Path, str]) -> None:
        """Refuse masks in a lossy format (``lossy``: path -> format, SegmentationFolder's ``.lossy_masks``) unless
        MASK_THRESHOLD is set: compression noise near edges would count as foreground (measured: +30 to +46 % of
        foreground pixels for 0/255 shapes saved as JPEG of quality 75), or make wrong classes.

        Raises:
            DataError: ``mask <path> is JPEG, a lossy format ...: save the masks losslessly (PNG or TIFF)...``.
        """
        if not lossy or self.threshold is not None:
            return
        path, kind = next(iter(lossy.items()))
        others = f" (as are {len(lossy) - 1} other masks)" if len(lossy) > 1 else ""
        if self.task == "multiclass" or self.mask_values is not None:
            why, fix = "near every edge its compression noise makes values of wrong classes", ""
        else:
            why = "near every edge its compression noise would count as foreground"
            fix = ", or set MASK_THRESHOLD (e.g. 127 for 0/255 masks: values above it are foreground)"
        raise DataError(
            f"mask {path} is {kind}, a lossy format{others}: {why}; save the masks losslessly (PNG or TIFF){fix}"
        )

    def _one_channel(self, mask: torch.Tensor, source: str) -> torch.Tensor:
        if mask.shape[0] != 1:
            raise DataError(
                f"mask {source} has {mask.shape[0]} channels; a {self.task} mask of class values has one "
                "(for colour masks set MASK_VALUES to {'r,g,b': class})"
            )
        return mask

    def _indices(self, mask: torch.Tensor, source: str) -> torch.Tensor:
        """Multiclass without MASK_VALUES: the mask holds class indices (and maybe IGNORE_INDEX)."""
        values = self._one_channel(mask, source)
        good = (values >= 0) & (values < self.num_classes)
        if values.is_floating_point():
            good &= values == values.round()
        ignored = values == self.ignore_index if self.ignore_index is not None else torch.zeros_like(good)
        self._refuse(values, ~(good | ignored), source)
        classes = torch.where(good, values, 0).to(torch.int64)  # NaN/fractions are refused above, so exact
        return classes.masked_fill_(ignored, IGNORE)

    def _lookup(self, mask: torch.Tensor, source: str) -> torch.Tensor:
        """MASK_VALUES: each pixel's value (or packed colour) looked up in the sorted keys."""
        if self.colour:
            if mask.shape[0] != 3:
                raise DataError(f"mask {source} has {mask.shape[0]} channels; MASK_VALUES maps (r,g,b) colours")
            whole = (mask >= 0) & (mask <= _CHANNEL_MAX)
            if mask.is_floating_point():
                whole &= mask == mask.round()
            channels = torch.where(whole, mask, 0).to(torch.int64)
            values = (channels[0] << 2 * _BITS | channels[1] << _BITS | channels[2]).unsqueeze(0)
            values = values.masked_fill(~whole.all(0, keepdim=True), -1)  # matches no packed key (all >= 0)
        else:
            values = self._one_channel(mask, source).to(torch.float64)
        position = torch.searchsorted(self._keys, values.contiguous()).clamp_(max=len(self._keys) - 1)
        found = self._keys[position] == values
        ignored = torch.zeros_like(found)
        if self.ignore_index is not None:
            ignored = values == (_pack(self.ignore_index) if self.colour else float(self.ignore_index))
        self._refuse(mask, ~(found | ignored), source)
        return self._classes[position].masked_fill_(ignored, IGNORE)

    def _refuse(self, mask: torch.Tensor, bad: torch.Tensor, source: str) -> None:
        """DataError naming the first pixel value (raster order) that is neither a class nor ignored, and others."""
        if not bad.any():
            return
        values = mask.reshape(mask.shape[0], -1)[:, bad.reshape(-1)]  # [M, bad pixels], raster order
        first = values[:, :1]
        same = values.isnan() if first.isnan().any() else values == first  # NaN != NaN, so count NaNs as such
        count = int(same.all(0).sum())
        shown = _text(first[:, 0].tolist())
        others = [text for text in dict.fromkeys(map(_text, values.unique(dim=1).T.tolist())) if text != shown]
        also = f"; other bad values: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else ""
        head = f"mask {source} holds value {shown} in {count} pixel{'s' if count > 1 else ''}"
        if self.mask_values is not None:
            keys = ("; " if self.colour else ", ").join(_show(key) for key in self.mask_values)
            raise DataError(
                f"{head}, not a MASK_VALUES key ({keys}){also}: add it to MASK_VALUES"
                + (" or set IGNORE_INDEX to it" if self.task == "multiclass" else "")
            )
        raise DataError(
            f"{head}, not a class (0..{self.num_classes - 1}){also}: set MASK_VALUES to map mask values to "
            "classes, IGNORE_INDEX to ignore it, or name more classes in CLASSES"
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, num_classes={self.num_classes}, "
            f"mask_values={self.mask_values!r}, ignore_index={self.ignore_index!r}, threshold={self.threshold!r})"
        )


def _pack(colour: tuple[int, int, int]) -> int:
    return colour[0] << 2 * _BITS | colour[1] << _BITS | colour[2]
