"""Several checkpoints as one model: probabilities averaged over members and test-time flips, given back as logits.

Each member normalises raw images with its own statistics and zeroes its no-data pixels (``Predictor.prepare``, per
pixel: a tile gets what its image would), in turn on each batch of tiles: memory is one model's, never a scene per
member. Test-time augmentation (TTA) averages over the flips (nnU-Net's mirroring, Isensee et al., Nature Methods 18,
203-211, 2021) and, for square inputs, quarter turns (the square's dihedral group, 8), each inverted on the output.
"""

import json
import math
from pathlib import Path

import torch
from torch import nn

from config.paths import GlobalConfig
from training.checkpoint import CheckpointError, find_checkpoint
from utils.data.normalization import invalid_pixels, normalize
from utils.metrics import probabilities
from utils.prediction import Predictor, load_predictor

EPS = 1e-6  # averaged probabilities are clipped to [EPS, 1 - EPS] before logit (to EPS before log): logits stay finite


def transforms(tta: bool, square: bool) -> list[tuple[int, bool]]:
    """``(quarter turns, flip)`` pairs, x -> rot90(x flipped left-right if flip, turns): the identity alone without
    TTA, 4 (any shape: half a turn of the flipped image is the up-down flip, of the image both flips) or 8 (square)."""
    return [(turn, flip) for turn in range(0, 4, 1 if square else 2) for flip in (False, True)] if tta else [(0, False)]


class Ensemble(nn.Module):
    """The members' probabilities averaged over members and views, as logits; ``divisor``: their least common one."""

    def __init__(self, members: list[Predictor], tta: bool = False, label: str = "ensemble") -> None:
        super().__init__()
        self.members, self.tta, self.task, self.label = members, tta, members[0].task, label
        self.models = nn.ModuleList(member.model for member in members)  # .to(), .parameters() see them
        self.divisor = math.lcm(*(member.divisor for member in members))  # a side that every member takes

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RAW float32 ``[N, C, h, w]`` (NaN: no data; sides multiples of divisor) -> float32 ``[N, K, h, w]``:
        ``logit(clip(p, EPS, 1 - EPS))`` (binary, multilabel) or ``log(clip(p, EPS))`` (multiclass): sigmoid / softmax
        give back ``p`` within EPS (K * EPS), thresholds in [EPS, 1 - EPS] and argmax pick what ``p`` picks."""
        total, views = torch.zeros(()), transforms(self.tta, images.shape[-1] == images.shape[-2])
        for member in self.members:
            invalid = torch.stack([invalid_pixels(image, member.nodata) for image in images])[:, None]
            prepared = normalize(images, member.stats).masked_fill(invalid, 0.0)
            for turns, flip in views:
                seen = torch.rot90(prepared.flip(-1) if flip else prepared, turns, (-2, -1))
                logits = torch.rot90(member.model(seen).float(), -turns, (-2, -1))  # each view inverted: x = T^-1(T(x))
                total = total + probabilities(logits.flip(-1) if flip else logits, self.task)
        mean = total / (len(self.members) * len(views))
        return mean.clamp_min(EPS).log() if self.task == "multiclass" else torch.logit(mean, EPS)


def cv_checkpoints(name: str, global_config: GlobalConfig) -> list[Path] | None:
    """The last.pt of each fold of the cross-validation ``name`` (LOG_DIR/<name>/cv.json: ``folds`` K, ``runs``
    {"0": run name, ...}), or None without one. Raises CheckpointError: a bad cv.json, a fold without last.pt."""
    path = global_config.LOG_DIR / name / "cv.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        folds, runs = int(record["folds"]), {int(fold): str(run) for fold, run in record["runs"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{name}: {path} is not a cross-validation's record ({err!r})") from None
    for fold in range(folds):
        if fold not in runs or not (global_config.WEIGHT_DIR / runs[fold] / "last.pt").is_file():
            state = f"(run {runs[fold]}) has no last.pt" if fold in runs else "is not started"
            how = f"python train.py --folds {folds} --resume {name} and the options it was started with"
            raise CheckpointError(f"{name}: fold {fold} of the cross-validation {state}; finish it with {how}")
    return [global_config.WEIGHT_DIR / runs[fold] / "last.pt" for fold in range(folds)]


def load_ensemble(
    names: list[str] | None, global_config: GlobalConfig, device: torch.device, tta: bool = False
) -> tuple[Predictor, list[Path]]:
    """``--weights`` names (checkpoint files, run names, ``latest``, cross-validations; None: the latest run's best.pt)
    -> ``(predictor, checkpoints)``: one checkpoint without TTA its own Predictor, else an :class:`Ensemble`'s (raw
    images: stats None, no-data NaN), run_name the cross-validation's if that is the one name, else the first run's.
    Raises CheckpointError: a bad name; checkpoints of different tasks, classes or bands."""
    paths, folds = [], None
    for name in names or ["latest"]:
        try:
            folds = cv_checkpoints(name, global_config)
            paths += folds or [find_checkpoint(name, global_config, "best.pt")]
        except CheckpointError as err:
            raise CheckpointError(f"--weights {err}" if names else f"{err} (or pass --weights)") from None
    if len(set(paths)) < len(paths):  # one model twice would weigh double in the average
        raise CheckpointError(f"--weights names {next(p for p in paths if paths.count(p) > 1)} twice: once is enough")
    members = [load_predictor(path, device) for path in paths]
    if len(members) == 1 and not tta:
        return members[0], paths
    first, cv_name = members[0], names[0] if names and len(names) == 1 and folds else None
    kinds = [f"{member.task} {member.classes} with {member.channels} band(s)" for member in members]
    for path, kind in zip(paths, kinds, strict=True):
        if kind != kinds[0]:
            raise CheckpointError(f"--weights: {path} is {kind} but {paths[0]} {kinds[0]}: not one ensemble")
    label = "_".join(([] if cv_name or len(members) == 1 else [f"ensemble{len(members)}"]) + (["tta"] if tta else []))
    ensemble = Ensemble(members, tta, label).eval()  # no extensions: a member's tracked run is not the ensemble's
    return Predictor(ensemble, first.config, None, cv_name or first.run_name, {}, float("nan")), paths
