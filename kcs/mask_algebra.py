"""Algebra over masks of the same model and blocks: union, intersection and majority of several
subnetworks (the seed-combined masks), and their Jaccard overlap (docs/method.md 4.5)."""

from __future__ import annotations

from typing import Sequence

import torch

from kcs.errors import KcsError
from kcs.masking import WeightMask


def _check_compatible(masks: Sequence[WeightMask]) -> None:
    if not masks:
        raise KcsError("no masks given")
    first = masks[0]
    for other in masks[1:]:
        if other.names != first.names or [t.shape for t in other.logits] != [t.shape for t in first.logits]:
            raise KcsError("masks cover different parameters or shapes; combine only masks of the same model and blocks")


def combine(masks: Sequence[WeightMask], how: str) -> WeightMask:
    """Union, intersection, or majority (in more than half of the masks; 2 of 3 = the authors' 'floral')."""
    _check_compatible(masks)
    binaries = [m.binary() for m in masks]
    combined = {}
    for name in masks[0].names:
        stacked = torch.stack([b[name].cpu() for b in binaries]).sum(dim=0)
        if how == "union":
            combined[name] = stacked >= 1
        elif how == "intersection":
            combined[name] = stacked == len(masks)
        elif how == "majority":
            combined[name] = stacked * 2 > len(masks)
        else:
            raise KcsError(f"--how must be union, intersection or majority, got '{how}'")
    result = masks[0].empty_like()
    result.load_binary(combined)
    return result


def jaccard(a: WeightMask, b: WeightMask) -> float:
    """|A ∩ B| / |A ∪ B| of two subnetworks (1.0 when both are empty)."""
    _check_compatible([a, b])
    inter = union = 0
    for (name, x), y in zip(a.binary().items(), b.binary().values()):
        x, y = x.cpu(), y.cpu()
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return 1.0 if union == 0 else inter / union
