"""K folds of a dataset for cross-validation: whole groups (scenes) per fold, balanced by class presence.

A fold is the validation set of one run of a cross-validation; the folds are disjoint and together hold every
sample. Units are the groups of VAL_GROUPS (neighbouring tiles of one scene must never train one fold's model and
validate it: nnU-Net's random folds of tiles let them leak) or, without groups, single samples. The units are dealt
out greedily, largest and rarest first, each to the fold where it leaves the per-class presence counts (samples
that contain a class) and the sample counts closest to an even share, the idea of scikit-learn's
StratifiedGroupKFold; seeded ties, so one SEED gives one split.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.folder import sample_source
from utils.data.targets import MaskEncoder


def class_presence(dataset: Dataset, encoder: MaskEncoder) -> np.ndarray:
    """Bool ``[N, K]``: whether sample n's mask holds a pixel of class k (binary: K=1, the foreground; multiclass:
    every class, background included). Reads every mask once (and its image: datasets return pairs).

    Raises:
        DataError: a mask that ``encoder`` cannot encode, naming its file.
    """
    rows = []
    for index in range(len(dataset)):  # type: ignore[arg-type]  # pylint: disable=consider-using-enumerate
        _, mask = dataset[index]
        target = encoder(torch.as_tensor(mask), sample_source(dataset, index))
        if encoder.task == "multiclass":
            rows.append(np.bincount(target[target >= 0].numpy().ravel(), minlength=encoder.num_classes) > 0)
        else:
            rows.append((target == 1).flatten(1).any(1).numpy())
    return np.array(rows, dtype=bool).reshape(len(rows), -1)


def assign_folds(presence: np.ndarray, groups: Sequence[str] | None, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every sample, int64 ``[N]``.

    Args:
        presence: bool ``[N, K]`` from :func:`class_presence` (the balance of the folds' classes).
        groups: the group of every sample (VAL_GROUPS), or None for one unit a sample.
        folds: K, at least 2 and at most the number of units.
        seed: orders the units before the greedy pass, and so breaks ties.

    Raises:
        ValueError: fewer units (groups or samples) than folds.
    """
    names = np.array(groups) if groups is not None else np.arange(len(presence)).astype(str)
    units = sorted(set(names.tolist()))
    if len(units) < folds:
        kind = "groups (VAL_GROUPS)" if groups is not None else "samples"
        raise ValueError(f"FOLDS={folds} needs at least {folds} {kind}; the data has {len(units)}")
    members = {unit: np.flatnonzero(names == unit) for unit in units}
    shuffled = [units[i] for i in np.random.default_rng(seed).permutation(len(units))]
    # Per unit: its samples, then its samples holding each class. Units heavy in a rare class go first (they are
    # the hardest to balance), then large ones; the seeded shuffle orders the rest (lexsort is stable).
    counts = np.array([[len(members[u]), *presence[members[u]].sum(0)] for u in shuffled], dtype=np.float64)
    target = counts.sum(0) / folds
    scale = np.maximum(target, 1e-12)
    rarity = (counts[:, 1:] / scale[1:]).max(1, initial=0.0)
    order = np.lexsort((-counts[:, 0], -rarity))
    fold_counts = np.zeros((folds, counts.shape[1]))
    result = np.zeros(len(presence), dtype=np.int64)
    for step, index in enumerate(order):
        empty = np.flatnonzero(fold_counts[:, 0] == 0)
        candidates = empty if len(empty) >= len(order) - step else np.arange(folds)  # no fold left empty
        before, after = fold_counts[candidates] - target, fold_counts[candidates] + counts[index] - target
        cost = ((after**2 - before**2) / np.maximum(scale, 1.0) ** 2).sum(1)  # the rise of the squared distance
        best = candidates[np.lexsort((fold_counts[candidates, 0], cost))[0]]
        fold_counts[best] += counts[index]
        result[members[shuffled[index]]] = best
    return result
