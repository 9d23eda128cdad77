"""Checkpoints over training: evaluate the masks a run kept every `checkpoint_every` steps
(`keep_step_masks`), and pick one of them by a stated rule (issue 11, section 4).

Selection sees validation data only (TargetKG, the ControlKG validation split, ControlLM
validation text): the test splits stay unseen until the chosen mask is evaluated.

The step of a mask file is its metadata `step` (the step masks `kcs train` keeps). The final
`mask.safetensors` has none; its step is the run's last one, read from its provenance `steps`.
Two files of the same step are refused (the last step mask and mask.safetensors are the same
subnetwork: give one of them).

Rules (`SelectionRule`):
- `final`: the last step;
- `best`: the step with the highest TargetKG ratio (remaining / full perplexity) among those whose
  ControlKG and ControlLM perplexity rose by at most `max_controlkg_increase` and
  `max_controllm_increase` (relative: 0.10 = +10 %) and whose sparsity is >= `min_sparsity`;
  ties go to the earliest step. If no step qualifies, the final one is taken and the result says so
  (`fallback: true` with the reason).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from kcs.errors import KcsError

RULES = ("final", "best")


@dataclass(frozen=True)
class SelectionRule:
    rule: str = "final"
    max_controlkg_increase: float = 0.10
    max_controllm_increase: float = 0.05
    min_sparsity: float = 0.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise KcsError(f"checkpoint selection rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        for key in ("max_controlkg_increase", "max_controllm_increase"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise KcsError(f"checkpoint selection '{key}' must be a finite number >= 0 "
                               f"(a relative increase: 0.1 = +10 %), got {value!r}")
        value = self.min_sparsity
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise KcsError(f"checkpoint selection 'min_sparsity' must be in [0, 1], got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def criterion(self) -> str:
        if self.rule == "final":
            return "the last step"
        return (f"the highest TargetKG ratio among steps with ControlKG change <= +{self.max_controlkg_increase:.2%}, "
                f"ControlLM change <= +{self.max_controllm_increase:.2%} and sparsity >= {self.min_sparsity:g}")

    def violations(self, row: dict) -> list[str]:
        """Why `row` does not qualify under `best` (empty: it qualifies)."""
        out = []
        if row["controlkg_change"] > self.max_controlkg_increase:
            out.append(f"ControlKG change {row['controlkg_change']:+.2%} > +{self.max_controlkg_increase:.2%}")
        if row["controllm_change"] > self.max_controllm_increase:
            out.append(f"ControlLM change {row['controllm_change']:+.2%} > +{self.max_controllm_increase:.2%}")
        if row["sparsity"] < self.min_sparsity:
            out.append(f"sparsity {row['sparsity']:.5f} < {self.min_sparsity:g}")
        return out


def select_checkpoint(rows: Sequence[dict], rule: SelectionRule) -> dict:
    """The chosen row, with `fallback` (bool) and `reason` (None unless it fell back) added."""
    if not rows:
        raise KcsError("no evaluated steps to select from")
    by_step = sorted(rows, key=lambda row: row["step"])
    final = by_step[-1]
    if rule.rule == "final":
        return {**final, "fallback": False, "reason": None}
    qualifying = [row for row in by_step if not rule.violations(row)]
    if not qualifying:
        return {**final, "fallback": True,
                "reason": f"no step satisfies {rule.criterion()}; fell back to the final step {final['step']}"}
    best = max(qualifying, key=lambda row: row["targetkg_ratio"])  # max keeps the first: the earliest on ties
    return {**best, "fallback": False, "reason": None}


def mask_step(path: Path, metadata: dict[str, str]) -> int:
    """The training step a mask file was kept at (see the module docstring)."""
    if "step" in metadata:
        try:
            return int(metadata["step"])
        except ValueError:
            raise KcsError(f"{path}: mask metadata 'step' is {metadata['step']!r}, not an integer") from None
    try:
        steps = json.loads(metadata.get("provenance") or "{}").get("steps")
    except (json.JSONDecodeError, AttributeError):
        steps = None
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise KcsError(f"{path}: the mask records no training step (no metadata 'step', no provenance 'steps'); "
                       "give the step masks `kcs train` keeps under <run>/checkpoints/ (keep_step_masks: true) "
                       "or a run's final mask.safetensors")
    return steps


def _ppls(lm, view: str, encodings: dict, text: torch.Tensor, prefix: dict, config) -> dict[str, float]:
    from kcs.evaluation import kg_statistics, lm_perplexity

    out = {f"{name}_ppl": kg_statistics(lm, [view], enc, config.eval_batch_size, prefix[name])[view]["ppl"]
           for name, enc in encodings.items()}
    out["controllm_ppl"] = lm_perplexity(lm, [view], text, config.eval_lm_batch_size, prefix["controllm"])[view]
    return out


def evaluate_steps(model: str | os.PathLike, mask_paths: Sequence[str | os.PathLike], targetkg, controlkg_val,
                   controllm_val: Sequence, config, device: str | None = None, progress: bool = False,
                   prefix_store: str | None = None) -> list[dict]:
    """One row per mask, ordered by step: sparsity, remaining-model perplexities, their change from
    the full model (whose perplexities every row carries as `*_ppl_full`), the mask path and digest.

    The model is loaded and the frozen prefix (hidden states entering the first masked block) is
    computed once (or read from `prefix_store`, kcs.prefix.PrefixStore); each mask is then copied into the same
    WeightMask, so a mask costs only the
    masked blocks' forward passes.
    """
    from tqdm.auto import tqdm

    from kcs.encoding import encode_verbalisations
    from kcs.evaluation import _load_inputs
    from kcs.maskfile import load_mask
    from kcs.masking import MaskedLM
    from kcs.models import load_model
    from kcs.prefix import PrefixCache, PrefixStore
    from kcs.provenance import file_sha256

    paths = [Path(p) for p in mask_paths]
    if not paths:
        raise KcsError("no mask files given")
    lm_model, tokenizer = load_model(model, device=device)
    holder = load_mask(paths[0], model=lm_model)  # the WeightMask every step mask is copied into
    lm = MaskedLM(lm_model, holder).eval()
    kgs, text = _load_inputs(tokenizer, targetkg, controlkg_val, controllm_val, config)
    encodings = {name: encode_verbalisations(facts, tokenizer, name) for name, facts in kgs.items()}
    budget = config.prefix_cache_mb * 2**20
    prefix = {}
    for name, ids, att in [(n, e.input_ids, e.attention_mask) for n, e in encodings.items()] + [("controllm", text, None)]:
        prefix[name] = PrefixCache.for_lm(lm, ids, att, budget, store=PrefixStore(prefix_store) if prefix_store else None)
        budget -= prefix[name].nbytes
    full = _ppls(lm, "full", encodings, text, prefix, config)

    rows, seen = [], {}
    for path in tqdm(paths, desc="evaluate steps", disable=not progress, dynamic_ncols=True):
        mask = load_mask(path, model=lm_model)
        if mask.infos != holder.infos or mask.granularity != holder.granularity:
            blocks = sorted({i.block for i in mask.infos.values()})
            first_blocks = sorted({i.block for i in holder.infos.values()})
            raise KcsError(f"{path}: masks other matrices (blocks {blocks}, {mask.granularity} granularity) than "
                           f"{paths[0]} (blocks {first_blocks}, {holder.granularity}); give the step masks of one run")
        step = mask_step(path, mask.metadata)
        if step in seen:
            raise KcsError(f"{path} and {seen[step]} are both step {step}; give one of them (a run's last step mask "
                           "and its mask.safetensors hold the same subnetwork)")
        seen[step] = path
        with torch.no_grad():
            for kept, loaded in zip(holder.logits, mask.logits):
                kept.copy_(loaded)
        remaining = _ppls(lm, "remaining", encodings, text, prefix, config)
        rows.append({
            "step": step,
            "sparsity": holder.sparsity(),
            **remaining,
            "targetkg_ratio": remaining["targetkg_ppl"] / full["targetkg_ppl"],
            "controlkg_change": remaining["controlkg_ppl"] / full["controlkg_ppl"] - 1.0,
            "controllm_change": remaining["controllm_ppl"] / full["controllm_ppl"] - 1.0,
            **{f"{key}_full": value for key, value in full.items()},
            "mask": str(path),
            "mask_sha256": file_sha256(path),
        })
    return sorted(rows, key=lambda row: row["step"])


def write_selected_mask(source: str | os.PathLike, out: str | os.PathLike, step: int, selection: dict) -> None:
    """Copy a mask file, its tensors byte for byte (so its digest still holds), with metadata `step`
    and `selection` (the rule and outcome, JSON) added: a metrics file of the copy says which step it is."""
    from kcs.maskfile import copy_mask

    copy_mask(source, out, step=str(step), selection=json.dumps(selection), selected_from=str(source))


def read_steps_file(path: str | os.PathLike) -> dict:
    """A `kcs evaluate-steps` output, checked to be one."""
    from kcs.readers import read_json

    data = read_json(path, "steps file", made_by="kcs evaluate-steps")
    if data.get("kind") != "steps" or not data.get("rows"):
        raise KcsError(f"{path}: not a `kcs evaluate-steps` file (no kind 'steps' with rows)")
    return data
