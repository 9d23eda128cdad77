"""Mask files: safetensors with one logits tensor per masked matrix plus metadata.

Metadata (strings): kcs_format, base_model, model_type, granularity, blocks (JSON), weight_in_out,
kcs_version, provenance (JSON). A mask is refused for a model whose parameters do not match,
naming the first mismatching parameter and the two shapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import kcs
from kcs.atomic import atomic_path
from kcs.errors import KcsError
from kcs.masking import MaskInfo, WeightMask, logit_shape
from kcs.models import block_and_module, layout_for

FORMAT = "mask/1"


def save_mask(path: str | os.PathLike, mask: WeightMask, *, base_model: str, model_type: str,
              provenance: dict[str, Any] | None = None, **extra: str) -> None:
    blocks = sorted({info.block for info in mask.infos.values()})
    metadata = {
        "kcs_format": FORMAT,
        "base_model": str(base_model),
        "model_type": model_type,
        "granularity": mask.granularity,
        "blocks": json.dumps(blocks),
        "weight_in_out": json.dumps(mask.weight_in_out),
        "weight_shapes": json.dumps({name: list(info.weight_shape) for name, info in mask.infos.items()}),
        "temperature": json.dumps(mask.temperature),
        "kcs_version": kcs.__version__,
        "provenance": json.dumps(provenance or {}),
        **{key: str(value) for key, value in extra.items()},
    }
    tensors = {name: logits.detach().float().cpu().contiguous() for name, logits in zip(mask.names, mask.logits)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: mask file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise KcsError(f"{path}: not a readable safetensors mask file ({err})") from None
    if metadata.get("kcs_format") != FORMAT:
        raise KcsError(f"{path}: not a kcs mask file (metadata kcs_format={metadata.get('kcs_format')!r}, expected {FORMAT!r})")
    return metadata


def load_mask(path: str | os.PathLike, model: nn.Module | None = None, device: str | None = None) -> WeightMask:
    """Load a mask; with `model`, check every parameter name and shape against it."""
    path = Path(path)
    metadata = read_metadata(path)
    granularity = metadata["granularity"]
    weight_in_out = json.loads(metadata["weight_in_out"])
    shapes = {name: tuple(shape) for name, shape in json.loads(metadata["weight_shapes"]).items()}
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if model is not None:
        _check_against_model(path, metadata, tensors, shapes, model)
        layout = layout_for(model)
        infos = {name: MaskInfo(*block_and_module(name, layout), shapes[name]) for name in tensors}
    else:
        infos = {name: MaskInfo(*_parse_name(name), shapes[name]) for name in tensors}
    mask = WeightMask(infos, granularity, weight_in_out, temperature=json.loads(metadata.get("temperature", "1.0")))
    for name, logits in zip(mask.names, mask.logits):
        logits.data.copy_(tensors[name])
    mask.metadata = metadata
    target = device or (next(model.parameters()).device if model is not None else "cpu")
    return mask.to(target)


def _parse_name(name: str) -> tuple[int, str]:
    # Without a model: the block index is the first integer path component.
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return int(part), ".".join(parts[i + 1:]).removesuffix(".weight")
    raise KcsError(f"mask parameter '{name}' has no block index")


def _check_against_model(path: Path, metadata: dict, tensors: dict, shapes: dict, model: nn.Module) -> None:
    params = dict(model.named_parameters())
    trained_on = metadata.get("base_model", "?")
    model_type = getattr(model.config, "model_type", "?")
    if metadata.get("model_type") != model_type:
        raise KcsError(
            f"{path}: mask was trained on a '{metadata.get('model_type')}' model ({trained_on}), "
            f"this model is '{model_type}'; use a mask trained on this model"
        )
    layout = layout_for(model)
    for name, logits in tensors.items():
        if name not in params:
            raise KcsError(f"{path}: mask parameter '{name}' does not exist in this model (mask trained on {trained_on})")
        weight_shape = tuple(params[name].shape)
        expected = logit_shape(weight_shape, metadata["granularity"], layout.weight_in_out)
        if shapes.get(name) != weight_shape or tuple(logits.shape) != expected:
            raise KcsError(
                f"{path}: mask parameter '{name}' has shape {tuple(logits.shape)} (weight {shapes.get(name)}) but "
                f"this model's weight is {weight_shape}; the mask was trained on {trained_on}"
            )
