"""Training checkpoints that cannot run code when they are read.

A checkpoint is one safetensors file: every tensor of the state (mask logits, optimiser moments,
RNG states) is a safetensors tensor, and everything else (step, sampler order, Python's RNG, the
run's identity) is a JSON document in the file's metadata, with each tensor replaced by its
name. Reading it parses JSON and raw tensor bytes only: unlike `torch.load` of a pickle, a crafted
file in a shared run directory cannot execute anything. Tuples, non-string dict keys and numpy
arrays (numpy's RNG state) are tagged so that the state comes back exactly as it was saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kcs.atomic import atomic_path
from kcs.errors import KcsError

FORMAT = "kcs-checkpoint/1"
_STATE_KEY = "kcs_state"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` (nested dicts, lists, tuples, tensors, numpy arrays, plain values) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors)
    metadata = {"format": FORMAT, _STATE_KEY: json.dumps(skeleton)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by `save_checkpoint`; a damaged file is a KcsError naming it."""
    path = Path(path)
    hint = "delete it (the run restarts from step 0), run with --restart-if-changed, or use a new --out"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise KcsError(f"{path}: not a readable kcs checkpoint ({err}); {hint}") from None
    if metadata.get("format") != FORMAT or _STATE_KEY not in metadata:
        raise KcsError(f"{path}: not a {FORMAT} file (metadata format {metadata.get('format')!r}); {hint}")
    try:
        return _decode(json.loads(metadata[_STATE_KEY]), tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise KcsError(f"{path}: its state document is damaged ({err}); {hint}") from None


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()  # safetensors refuses shared storage
        return {"tensor": name}
    if isinstance(obj, np.ndarray):
        name = f"t{len(tensors)}"
        tensors[name] = torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind in "ui" else obj.copy())
        return {"ndarray": name, "dtype": obj.dtype.str}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"dict": {k: _encode(v, tensors) for k, v in obj.items()}}
        return {"items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "tensor" in obj:
        return tensors[obj["tensor"]]
    if "ndarray" in obj:
        return tensors[obj["ndarray"]].numpy().astype(np.dtype(obj["dtype"]))
    if "tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["tuple"])
    if "dict" in obj:
        return {k: _decode(v, tensors) for k, v in obj["dict"].items()}
    if "items" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["items"]}
    raise ValueError(f"unknown entry {sorted(obj)}")
