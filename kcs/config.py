"""Mask-training hyper-parameters: one dataclass, defaults = the paper's (docs/method.md 2.3)."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kcs.errors import KcsError


@dataclass
class TrainConfig:
    steps: int = 40_000  # optimiser steps (one TargetKG batch each)
    lr: float = 0.2  # Adam on the mask logits
    warmup_frac: float = 0.1  # linear LR warm-up share of the steps
    init_p: float = 0.45  # initial P(weight in subnetwork) -> logits start at logit(0.45)
    temperature: float = 1.0  # Gumbel-sigmoid temperature (fixed; scales only the straight-through gradient)
    noise_scale_init: float = 1.0  # scale of the logistic sampling noise at step 0 (the paper: 1) ...
    noise_scale_final: float = 1.0  # ... linear to this at the last step (the paper: 1, no annealing)
    granularity: str = "weight"  # weight | neuron (one logit per input feature)
    top_k_blocks: int | None = None  # mask the top k blocks (None: top half)
    block_range: list[int] | None = None  # or an inclusive [first, last] block range
    lambda_targetkg: float = 1.5
    lambda_controlkg: float = 1.0
    lambda_controllm: float = 1.0
    lambda_expression: float = 1.0
    lambda_reg_init: float = 2.0  # sparsity weight until half-way ...
    lambda_reg_final: float = 3.0  # ... then linear to this at the last step
    use_targetkg: bool = True  # the seven ablations are switches of these terms
    use_controlkg: bool = True
    use_controllm: bool = True
    use_expression: bool = False
    use_sparsity: bool = True
    kg_kl_position: str = "tail"  # tail (paper's intent) | after_tail (authors' released code)
    targetkg_batch_size: int = 250
    controlkg_batch_size: int = 250
    controllm_batch_size: int = 10
    controllm_block_size: int = 512
    controllm_max_blocks: int | None = 4656  # training blocks read from the ControlLM text
    eval_controllm_blocks: int = 10  # validation blocks during training
    controlkg_val_size: int = 50  # validation facts (from --controlkg-val, else the ControlKG's first ones)
    validate_every: int = 100
    checkpoint_every: int = 200
    eval_batch_size: int = 250  # KG facts per batch in perplexity (the paper's value)
    eval_lm_batch_size: int = 8
    prefix_cache_mb: int = 2048  # cache the hidden states entering the first masked block up to this size
    reference_cache_mb: int = 2048  # cache the full model's output statistics (kcs.reference) up to this size
    keep_step_masks: bool = True  # keep a bit-packed mask every step_mask_every steps (checkpoint selection)
    step_mask_every: int | None = None  # None: at every checkpoint; always at the last step

    def __post_init__(self) -> None:
        if self.granularity not in ("weight", "neuron"):
            raise KcsError(f"config key 'granularity' must be 'weight' or 'neuron', got '{self.granularity}'")
        if self.kg_kl_position not in ("tail", "after_tail"):
            raise KcsError(f"config key 'kg_kl_position' must be 'tail' or 'after_tail', got '{self.kg_kl_position}'")
        for key, (accepts, wanted) in _RANGES.items():
            value = getattr(self, key)
            if value is not None and not accepts(value):
                raise KcsError(f"config key '{key}' must be {wanted}, got {value!r}")
        if self.block_range is not None:
            if len(self.block_range) != 2 or self.block_range[0] < 0:
                raise KcsError(f"config key 'block_range' must be [first, last] with first >= 0, got {self.block_range}")
            if self.block_range[0] > self.block_range[1]:
                raise KcsError(f"config key 'block_range' {self.block_range} is reversed: write [first, last] "
                               "with first <= last")
        if not any((self.use_targetkg, self.use_controlkg, self.use_controllm, self.use_expression, self.use_sparsity)):
            raise KcsError("config: every loss term is switched off (use_targetkg, use_controlkg, use_controllm, "
                           "use_expression, use_sparsity); switch at least one on")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise KcsError(f"{source}: unknown key '{key}'; known keys: {', '.join(sorted(known))}")
            if not _matches(value, hints[key]):
                raise KcsError(f"{source}: key '{key}' must be {_describe(hints[key])}, got {value!r}")
        try:
            return cls(**values)
        except KcsError as err:
            raise KcsError(f"{source}: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        values = load_yaml_mapping(path, "config") if path is not None else {}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, str(path) if path is not None else "config")


def _finite_above(low: float, strict: bool = True):
    return lambda v: math.isfinite(v) and (v > low if strict else v >= low)


# value ranges of the numeric keys (None, where a key allows it, is checked by type alone)
_RANGES: dict[str, tuple[Any, str]] = {
    "steps": (lambda v: v >= 1, ">= 1"),
    "lr": (_finite_above(0.0), "a finite number > 0"),
    "warmup_frac": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "init_p": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "temperature": (_finite_above(0.0), "a finite number > 0 (0 would divide the logits by zero)"),
    **{key: (_finite_above(0.0, strict=False), "a finite number >= 0") for key in (
        "noise_scale_init", "noise_scale_final", "lambda_targetkg", "lambda_controlkg", "lambda_controllm",
        "lambda_expression", "lambda_reg_init", "lambda_reg_final")},
    **{key: (lambda v: v >= 1, ">= 1") for key in (
        "top_k_blocks", "targetkg_batch_size", "controlkg_batch_size", "controllm_batch_size", "controllm_max_blocks",
        "eval_controllm_blocks", "controlkg_val_size", "validate_every", "checkpoint_every", "eval_batch_size",
        "eval_lm_batch_size", "step_mask_every")},
    "controllm_block_size": (lambda v: v >= 2, ">= 2 (a block predicts its tokens from the ones before)"),
    **{key: (lambda v: v >= 0, ">= 0") for key in ("prefix_cache_mb", "reference_cache_mb")},
}


def load_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (e.g. of hyper-parameters); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: {what} file not found")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise KcsError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(loaded, dict):
        raise KcsError(f"{path}: expected a mapping of {what} keys")
    return loaded


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


def config_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


__all__ = ["TrainConfig", "config_field_names"]
