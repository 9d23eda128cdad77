"""Mask files: safetensors with one logits tensor per masked matrix plus metadata.

Metadata (strings): kcs_format, base_model, model_type, granularity, blocks (JSON), weight_in_out,
weight_shapes (JSON), kcs_version, provenance (JSON), labels (JSON), deviations (JSON), tensors_sha256. Every reader goes through
`load_mask` / `read_mask_tensors`, which refuse, naming the file and what is wrong: metadata that is
missing or not JSON, a matrix missing or extra, a tensor shape that disagrees with the metadata,
NaN logits, and tensor bytes that do not match the digest written with them (safetensors itself
has no checksum). Against a model: parameters that do not match are refused (first mismatch and
both shapes named), and a mask made for another base model of the same shapes is warned about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import kcs
from kcs.atomic import atomic_path
from kcs.errors import KcsError
from kcs.masking import GRANULARITIES, MaskInfo, WeightMask, logit_shape
from kcs.models import block_and_module, layout_for

FORMAT = "mask/1"
log = logging.getLogger(__name__)


BINARY_MAGNITUDE = 10.0  # logits of a mask read from bits: +10 in the subnetwork, -10 outside


def save_mask(path: str | os.PathLike, mask: WeightMask, *, base_model: str, model_type: str,
              provenance: dict[str, Any] | None = None, labels: dict[str, Any] | None = None,
              deviations: dict[str, Any] | None = None, binary: bool = False, **extra: str) -> None:
    """Write a mask. `labels`: which run it is (kcs.labels). `deviations`: the training settings that are
    not the paper's (TrainConfig.deviations_from_paper). `binary`: only the deterministic subnetwork,
    bit-packed (32x smaller than float logits; for random baselines and mask algebra, whose logits carry
    nothing else)."""
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
        "labels": json.dumps(labels or {}),
        "deviations": json.dumps(deviations or {}),
        **{key: str(value) for key, value in extra.items()},
    }
    bad = [name for name, logits in zip(mask.names, mask.logits) if torch.isnan(logits).any()]
    if bad:
        raise KcsError(f"{path}: not written: matrix '{bad[0]}' has NaN logits (a diverged run)")
    if binary:
        tensors = {name: torch.from_numpy(np.packbits(member.cpu().numpy().reshape(-1)))
                   for name, member in mask.binary().items()}
        metadata["encoding"] = "bits"
    else:
        tensors = {name: logits.detach().float().cpu().contiguous() for name, logits in zip(mask.names, mask.logits)}
    metadata["tensors_sha256"] = tensors_digest(tensors)
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


def copy_mask(source: str | os.PathLike, out: str | os.PathLike, **metadata: str) -> None:
    """Copy a mask file, its tensors byte for byte (so its digest still holds), with metadata added
    (e.g. the step and selection of a chosen checkpoint)."""
    read_mask_tensors(source)  # refuse a damaged file before copying it
    with safe_open(str(source), framework="pt") as handle:
        merged = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    merged.update(metadata)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=merged)


def read_labels(path: str | os.PathLike) -> dict[str, Any]:
    """The labels a mask was written with (kcs.labels); {} for a mask written without any."""
    return _metadata_object(path, "labels")


def read_deviations(path: str | os.PathLike) -> dict[str, Any]:
    """The training settings of a mask that are not the paper's, {key: {paper, used, why}}; {} for a mask
    written without any (the paper's recipe, or a file from before kcs recorded them)."""
    return _metadata_object(path, "deviations")


def _metadata_object(path: str | os.PathLike, key: str) -> dict[str, Any]:
    metadata = read_metadata(path)
    if key not in metadata:
        return {}
    value = metadata_json(Path(path), metadata, key)
    if not isinstance(value, dict):
        raise KcsError(f"{path}: mask metadata '{key}' is not a JSON object; re-create the file")
    return value


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def metadata_json(path: Path, metadata: dict, key: str):
    if key not in metadata:
        raise KcsError(f"{path}: mask metadata has no '{key}'; the file was not written by kcs (or was edited): "
                       "re-create it with kcs train / random-mask / combine-masks")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise KcsError(f"{path}: mask metadata '{key}' is not JSON ({err}); re-create the file") from None


def read_mask_tensors(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor], dict[str, tuple]]:
    """(metadata, logits per matrix, weight shape per matrix) of a mask file, all checked."""
    path = Path(path)
    metadata = read_metadata(path)
    granularity = metadata.get("granularity")
    if granularity not in GRANULARITIES:
        raise KcsError(f"{path}: mask metadata 'granularity' is {granularity!r}, expected one of "
                       f"{', '.join(GRANULARITIES)}; re-create the file")
    weight_in_out = metadata_json(path, metadata, "weight_in_out")
    raw_shapes = metadata_json(path, metadata, "weight_shapes")
    if not isinstance(weight_in_out, bool) or not isinstance(raw_shapes, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(d, int) and d > 0 for d in v) for v in raw_shapes.values()):
        raise KcsError(f"{path}: mask metadata 'weight_in_out' / 'weight_shapes' are malformed; re-create the file")
    shapes = {name: tuple(shape) for name, shape in raw_shapes.items()}
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise KcsError(f"{path}: the mask's tensors cannot be read ({err}); re-create the file") from None
    missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing:
        raise KcsError(f"{path}: the mask has no tensor for matrix '{missing[0]}' ({len(missing)} of {len(shapes)} "
                       "missing); the file is incomplete: re-create it")
    if extra:
        raise KcsError(f"{path}: tensor '{extra[0]}' is not among the mask's weight_shapes metadata; re-create the file")
    if not shapes:
        raise KcsError(f"{path}: the mask holds no matrix")
    stored_digest = tensors_digest(tensors)  # of the bytes as stored (packed, for bit masks)
    encoding = metadata.get("encoding", "logits")
    if encoding not in ("logits", "bits"):
        raise KcsError(f"{path}: mask metadata 'encoding' is {encoding!r}, expected 'logits' or 'bits'")
    for name in list(tensors):
        expected = logit_shape(shapes[name], granularity, weight_in_out)
        if encoding == "bits":
            tensors[name] = _unpack(path, name, tensors[name], expected)
        logits = tensors[name]
        if tuple(logits.shape) != expected:
            raise KcsError(f"{path}: tensor '{name}' has shape {tuple(logits.shape)}, but its metadata (weight "
                           f"{shapes[name]}, {granularity} mask) needs {expected}; re-create the file")
        if not logits.is_floating_point():
            raise KcsError(f"{path}: tensor '{name}' holds {logits.dtype}, not logits; re-create the file")
        if torch.isnan(logits).any():
            raise KcsError(f"{path}: tensor '{name}' has {int(torch.isnan(logits).sum())} NaN logits, so which weights "
                           "it removes is undefined (a diverged run?); re-train the mask")
    recorded = metadata.get("tensors_sha256")
    if recorded is None:
        log.debug("%s: no tensor digest (written before kcs recorded one)", path)
    elif recorded != stored_digest:
        raise KcsError(f"{path}: the tensor bytes do not match the digest written with them (tensors_sha256); "
                       "the file is damaged: copy it again or re-create it")
    return metadata, tensors, shapes


def _unpack(path: Path, name: str, packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bits -> logits (+-BINARY_MAGNITUDE) of `shape`."""
    count = shape[0] * shape[1]
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != (count + 7) // 8:
        raise KcsError(f"{path}: tensor '{name}' holds {packed.numel()} {packed.dtype} values, but a bit-packed "
                       f"mask of shape {shape} needs {(count + 7) // 8} uint8; re-create the file")
    bits = np.unpackbits(packed.numpy(), count=count).reshape(shape).astype(bool)
    return torch.where(torch.from_numpy(bits), BINARY_MAGNITUDE, -BINARY_MAGNITUDE).float()


def load_mask(path: str | os.PathLike, model: nn.Module | None = None, device: str | None = None) -> WeightMask:
    """Load a mask; with `model`, check every parameter name and shape against it."""
    path = Path(path)
    metadata, tensors, shapes = read_mask_tensors(path)
    granularity = metadata["granularity"]
    weight_in_out = json.loads(metadata["weight_in_out"])
    if model is not None:
        _check_against_model(path, metadata, tensors, shapes, model)
        layout = layout_for(model)
        infos = {name: MaskInfo(*block_and_module(name, layout), shapes[name]) for name in tensors}
    else:
        infos = {name: MaskInfo(*parse_mask_name(name), shapes[name]) for name in tensors}
    temperature = metadata_json(path, metadata, "temperature") if "temperature" in metadata else 1.0
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise KcsError(f"{path}: mask metadata 'temperature' is {temperature!r}, expected a number > 0")
    mask = WeightMask(infos, granularity, weight_in_out, temperature=float(temperature))
    for name, logits in zip(mask.names, mask.logits):
        logits.data.copy_(tensors[name])
    mask.metadata = metadata
    target = device or (next(model.parameters()).device if model is not None else "cpu")
    return mask.to(target)


def parse_mask_name(name: str) -> tuple[int, str]:
    """(block, module) of a mask entry without the model: the block index is the first integer
    path component ("transformer.h.3.mlp.c_fc.weight" -> (3, "mlp.c_fc"))."""
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
    model_name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if model_name and trained_on != "?" and Path(str(model_name).rstrip("/")).name != Path(trained_on.rstrip("/")).name:
        log.warning("%s: the mask was trained on %s, and is applied to %s (same shapes, another base model?)",
                    path, trained_on, model_name)
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
