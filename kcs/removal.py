"""Removing a subnetwork: zero its weights and save an ordinary Hugging Face model folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from kcs.atomic import atomic_dir, write_json
from kcs.masking import WeightMask


@torch.no_grad()
def zero_subnetwork_(model: nn.Module, mask: WeightMask) -> dict[str, torch.Tensor]:
    """Zero the subnetwork's weights in place; returns, per parameter, which entries were zeroed."""
    params = dict(model.named_parameters())
    zeroed = {}
    for name, member in mask.binary().items():
        weight = params[name]
        removed = member.to(weight.device).expand_as(weight)
        weight.masked_fill_(removed, 0.0)
        zeroed[name] = removed.clone()
    return zeroed


def save_remaining(model: nn.Module, tokenizer, out_dir: str | os.PathLike, provenance: dict) -> Path:
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "kcs_provenance.json", provenance)
    return out_dir
