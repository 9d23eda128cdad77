"""How dense the subnetwork is per layer and module type, read straight from mask files.

A weight is in the subnetwork when its logit is > 0 (sigma(l) > 0.5, the deterministic eval mask,
method-spec 1.4). Neuron masks have a broadcastable shape; their density is the same fraction of the
full matrix, so one formula serves both granularities. The model itself is not needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from safetensors import SafetensorError, safe_open

from kcs.errors import KcsError
from kcs.reporting.layout import parse_paths

_BLOCK_NAME = re.compile(r"^(?P<prefix>.+?)\.(?P<block>\d+)\.(?P<module>.+)\.weight$")


def mask_density(path: str | Path) -> pd.DataFrame:
    """Rows: block, module, weights (size of the matrix), density (share in the subnetwork)."""
    rows = []
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = json.loads(metadata.get("weight_shapes", "{}"))
            for name in handle.keys():
                match = _BLOCK_NAME.match(name)
                if match is None:
                    raise KcsError(f"{path}: mask entry '{name}' is not a block weight (expected PREFIX.N.MODULE.weight)")
                logits = handle.get_tensor(name)
                shape = shapes.get(name, list(logits.shape))
                weights = int(shape[0]) * int(shape[1])
                rows.append({"block": int(match["block"]), "module": match["module"], "weights": weights,
                             "density": float((logits > 0).float().mean())})
    except (SafetensorError, OSError) as err:
        raise KcsError(f"{path}: not a readable mask file ({err})") from None
    if not rows:
        raise KcsError(f"{path}: the mask file holds no tensor")
    return pd.DataFrame(rows)


def collect_densities(files: list[str | Path], layout: str) -> pd.DataFrame:
    frames = []
    for path, labels in zip(files, parse_paths(layout, files)):
        frame = mask_density(path)
        for key, value in labels.items():
            frame[key] = int(value) if value.isdigit() else value
        frames.append(frame)
    if not frames:
        raise KcsError("no mask files given")
    return pd.concat(frames, ignore_index=True)
