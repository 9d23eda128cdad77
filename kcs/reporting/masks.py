"""How dense the subnetwork is per layer and module type, read straight from mask files.

A weight is in the subnetwork when its logit is > 0 (sigma(l) > 0.5, the deterministic eval mask,
docs/method.md 1.4). Neuron masks have a broadcastable shape; their density is the same fraction of the
full matrix, so one formula serves both granularities. The model itself is not needed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kcs.errors import KcsError
from kcs.labels import require_labels
from kcs.maskfile import parse_mask_name, read_labels, read_mask_tensors


def mask_density(path: str | Path) -> pd.DataFrame:
    """Rows: block, module, weights (size of the matrix), density (share in the subnetwork)."""
    _, tensors, shapes = read_mask_tensors(path)
    rows = []
    for name, logits in tensors.items():
        block, module = parse_mask_name(name)
        rows.append({"block": block, "module": module, "weights": shapes[name][0] * shapes[name][1],
                     "density": float((logits > 0).float().mean())})
    return pd.DataFrame(rows)


def collect_densities(files: list[str | Path]) -> pd.DataFrame:
    """The densities of every mask, each row labelled by its mask's labels."""
    frames = []
    for path in files:
        frame = mask_density(path)
        for key, value in require_labels(read_labels(path), str(path)).items():
            frame[key] = value
        frames.append(frame)
    if not frames:
        raise KcsError("no mask files given")
    return pd.concat(frames, ignore_index=True)
