"""The random baseline: a random subnetwork of the same size as a learned one, matrix by matrix
(docs/method.md 4.4), in seeded, numbered draws."""

from __future__ import annotations

import os

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


def save_random_like(like: str | os.PathLike, seed: int, draw: int, out: str | os.PathLike) -> WeightMask:
    """Write draw `draw` of the random subnetwork matching the mask file `like` (`kcs random-mask`):
    the labels of the run it matches with method random[-N], kind 'random'. Returns the random mask."""
    from kcs.grid import random_method
    from kcs.maskfile import load_mask, read_deviations, read_labels, save_mask
    from kcs.provenance import provenance

    mask = load_mask(like)
    randomised = random_like(mask, seed, draw)
    labels = read_labels(like) | {"method": random_method(draw)}
    save_mask(out, randomised, base_model=mask.metadata["base_model"], model_type=mask.metadata["model_type"],
              labels=labels, deviations=read_deviations(like), binary=True, kind="random", like=str(like),
              provenance=provenance(seed=seed, draw=draw, model=mask.metadata["base_model"], like=str(like)))
    return randomised
