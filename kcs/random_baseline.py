"""The random baseline: a random subnetwork of the same size as a learned one, matrix by matrix
(docs/method.md 4.4), in seeded, numbered draws."""

from __future__ import annotations

import torch

from kcs.errors import KcsError
from kcs.masking import WeightMask


def draw_seed(seed: int, draw: int = 1) -> int:
    """The generator seed of random draw `draw` (1, 2, ...) for a run's seed: draw 1 is the seed
    itself (one draw per run, as before draws were counted), later draws are spaced far apart."""
    if draw < 1:
        raise KcsError(f"random draw must be 1 or more, got {draw}")
    return seed + 1_000_003 * (draw - 1)


def random_like(mask: WeightMask, seed: int, draw: int = 1) -> WeightMask:
    """A random subnetwork with exactly as many removed weights (or neurons) in every matrix as `mask`."""
    generator = torch.Generator().manual_seed(draw_seed(seed, draw))
    members = {}
    for name, member in mask.binary().items():
        count = int(member.sum())
        chosen = torch.zeros(member.numel(), dtype=torch.bool)
        chosen[torch.randperm(member.numel(), generator=generator)[:count]] = True
        members[name] = chosen.view(member.shape)
    randomised = mask.empty_like()
    randomised.load_binary(members)
    return randomised
