"""Mask training: learn which weights to remove so that the remaining model forgets a TargetKG
while keeping its ControlKG and ControlLM behaviour (docs/method.md section 2).

A run directory holds everything needed to resume after a kill at any moment: the last
checkpoint (logits, optimiser state, RNG states, data-order state, step) is replaced atomically,
and a resumed run ends with the same mask, bit for bit on the CPU, as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from kcs import objectives
from kcs.atomic import atomic_path, write_json
from kcs.checkpoint import load_checkpoint, save_checkpoint
from kcs.config import TrainConfig
from kcs.encoding import KGEncoding, encode_verbalisations, read_text_blocks
from kcs.errors import KcsError
from kcs.evaluation import kg_statistics, lm_perplexity
from kcs.kg import read_kg
from kcs.maskfile import save_mask
from kcs.masking import MaskedLM, WeightMask
from kcs.models import load_model, num_blocks, select_blocks
from kcs.prefix import PrefixCache, PrefixStore
from kcs.progress import ProgressLog
from kcs.provenance import file_sha256, provenance
from kcs.reference import FullModelReference

log = logging.getLogger(__name__)

LOG_COLUMNS = [
    "step", "lr", "lambda_reg", "loss", "loss_targetkg", "loss_controlkg", "loss_controllm",
    "loss_expression", "loss_sparsity", "sparsity", "val_targetkg_ppl", "val_controlkg_ppl", "val_controllm_ppl",
]

__all__ = ["TrainConfig", "train_mask", "mask_step", "mask_optimiser", "seed_everything", "CyclingSampler", "TrainingData"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class CyclingSampler:
    """Batches of indices cycling through n items, reshuffled at each pass; its state can be saved."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.arange(n) if self.batch_size == n else torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.batch_size == self.n:  # the whole set every step (a TargetKG fits one batch)
            return self.order
        taken = []
        needed = self.batch_size
        while needed:
            if self.position >= self.n:
                self.order = torch.randperm(self.n, generator=self.generator)
                self.position = 0
            chunk = self.order[self.position:self.position + needed]
            taken.append(chunk)
            self.position += len(chunk)
            needed -= len(chunk)
        return torch.cat(taken)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]


@dataclass
class TrainingData:
    """The fixed inputs of one run, with the frozen prefix and the full model's references cached.

    Budgets: `prefix_cache_mb` for the hidden states entering the first masked block (kcs.prefix),
    `reference_cache_mb` for the full model's output statistics (kcs.reference); each set takes
    what is left, in the order the training step uses them; what does not fit is recomputed.
    """

    targetkg: KGEncoding
    controlkg: KGEncoding
    text: torch.Tensor  # [blocks, controllm_block_size] token ids
    prefix: dict[str, PrefixCache]
    reference: dict[str, FullModelReference]

    @classmethod
    def build(cls, lm: MaskedLM, config: TrainConfig, targetkg: KGEncoding, controlkg: KGEncoding,
              text: torch.Tensor, controlkg_val: KGEncoding, store: PrefixStore | None = None) -> "TrainingData":
        left = config.prefix_cache_mb * 2**20
        prefix = {}
        for name, ids, att in (("targetkg", targetkg.input_ids, targetkg.attention_mask),
                               ("controlkg", controlkg.input_ids, controlkg.attention_mask),
                               ("controllm", text, None),
                               ("controlkg_val", controlkg_val.input_ids, controlkg_val.attention_mask)):
            prefix[name] = PrefixCache.for_lm(lm, ids, att, left, store=store)
            left -= prefix[name].nbytes
        left = config.reference_cache_mb * 2**20
        reference = {}
        if config.use_controlkg:
            reference["controlkg"] = FullModelReference(lm, prefix["controlkg"], controlkg.kl_index(config.kg_kl_position), left)
            left -= reference["controlkg"].nbytes
        if config.use_controllm:
            reference["controllm"] = FullModelReference(lm, prefix["controllm"], None, left)
        return cls(targetkg, controlkg, text, prefix, reference)

    def cache_report(self) -> dict:
        """What was cached: rows cached of rows, and MB, per set (recorded in run.json)."""
        report = {f"prefix/{k}": {"rows": c.n_cached, "of": len(c), "mb": round(c.nbytes / 2**20, 1)}
                  for k, c in self.prefix.items()}
        report.update({f"reference/{k}": {"rows": r.n_cached, "of": len(r.prefix), "mb": round(r.nbytes / 2**20, 1)}
                       for k, r in self.reference.items()})
        return report


class TrainLog:
    """The per-step CSV log; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if resume_step > 0 and path.exists():
            with path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_COLUMNS)

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_mask(model: str, targetkg: str | os.PathLike, controlkg: str | os.PathLike,
               controllm: Sequence[str | os.PathLike], out_dir: str | os.PathLike, config: TrainConfig,
               seed: int = 42, controlkg_val: str | os.PathLike | None = None, device: str | None = None,
               progress: bool = True, restart_if_changed: bool = False, log_every: int = 100,
               log_seconds: float = 60.0, prefix_store: str | os.PathLike | None = None) -> Path:
    """Train (or resume, or recognise as finished) a mask; returns the path of the final mask file.

    `prefix_store`: a folder where the frozen prefix's hidden states are shared with the other
    runs and evaluations of the same model and data (kcs.prefix.PrefixStore; same numbers).

    A progress line (step, losses, sparsity, rate, ETA) is logged every `log_every` steps or
    `log_seconds` seconds, whichever comes first, and at the first and last step, bar or no bar.

    A checkpoint made with other arguments is refused, or, with `restart_if_changed` (what a
    pipeline wants when its inputs changed), discarded with the rest of the run directory.
    """
    out_dir = Path(out_dir)
    final_mask = out_dir / "mask.safetensors"
    ckpt_dir = out_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.safetensors"
    legacy_ckpt = ckpt_dir / "last.pt"  # earlier kcs pickled its checkpoints; never unpickled now
    inputs = {"targetkg": targetkg, "controlkg": controlkg, "controlkg_val": controlkg_val}
    fingerprint = {k: file_sha256(v) for k, v in inputs.items() if v is not None}
    fingerprint.update({f"controllm[{i}]": file_sha256(p) for i, p in enumerate(controllm)})
    identity = {"model": str(model), "seed": seed, "config": config.to_dict(), "inputs": fingerprint}

    if final_mask.exists() and (out_dir / "run.json").exists():
        log.info("%s is complete; nothing to do", final_mask)
        return final_mask

    resume = None
    if legacy_ckpt.exists() and not restart_if_changed:
        raise KcsError(f"{legacy_ckpt}: a pickled checkpoint, which kcs no longer loads (unpickling a file can run "
                       "code); delete it to start the run over, run with --restart-if-changed, or use a new --out")
    if last_ckpt.exists() or legacy_ckpt.exists():
        try:
            if not last_ckpt.exists():
                raise KcsError(f"{legacy_ckpt}: a pickled checkpoint, not loaded")
            resume = load_checkpoint(last_ckpt)
            _check_same_run(out_dir, resume["identity"], identity)
        except KcsError as err:
            if not restart_if_changed:
                raise
            log.warning("%s; starting over", err)
            for stale in (ckpt_dir, out_dir / "train_log.csv", out_dir / "run_started.json"):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
            resume = None

    seed_everything(seed)
    lm_model, tokenizer = load_model(model, device=device)
    dev = next(lm_model.parameters()).device
    blocks = select_blocks(num_blocks(lm_model), config.top_k_blocks, config.block_range)
    mask = WeightMask.for_model(lm_model, blocks, config.granularity, config.init_p, config.temperature)
    lm = MaskedLM(lm_model, mask)
    optimiser = mask_optimiser(mask, config.lr)

    target_facts = read_kg(targetkg)
    control_facts = read_kg(controlkg)
    val_facts = (read_kg(controlkg_val) if controlkg_val else control_facts)[: config.controlkg_val_size]
    target_enc = encode_verbalisations(target_facts, tokenizer, str(targetkg))
    control_enc = encode_verbalisations(control_facts, tokenizer, str(controlkg))
    val_enc = encode_verbalisations(val_facts, tokenizer, str(controlkg_val or controlkg))
    text = read_text_blocks(controllm, tokenizer, config.controllm_block_size, config.controllm_max_blocks)
    n_val_blocks = min(config.eval_controllm_blocks, text.shape[0])
    val_text = text[:n_val_blocks]

    samplers = {
        "targetkg": CyclingSampler(len(target_enc), config.targetkg_batch_size, seed + 1),
        "controlkg": CyclingSampler(len(control_enc), config.controlkg_batch_size, seed + 2),
        "controllm": CyclingSampler(text.shape[0], config.controllm_batch_size, seed + 3),
    }
    data = TrainingData.build(lm, config, target_enc, control_enc, text, val_enc,
                              PrefixStore(prefix_store) if prefix_store else None)
    log.info("caches: %s", data.cache_report())

    start_step = 0
    elapsed_before = 0.0
    if resume is not None:
        with torch.no_grad():
            for logits, saved in zip(mask.logits, resume["logits"]):
                logits.copy_(saved.to(dev))
        optimiser.load_state_dict(resume["optimiser"])
        for name, sampler in samplers.items():
            sampler.load_state_dict(resume["samplers"][name])
        _set_rng_state(resume["rng"])
        start_step = resume["step"]
        elapsed_before = resume.get("elapsed_s", 0.0)
        log.info("resuming %s from step %d", out_dir, start_step)

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(exist_ok=True)
    train_log = TrainLog(out_dir / "train_log.csv", start_step)
    started = provenance(config=config.to_dict(), seed=seed, model=str(model), inputs=fingerprint, status="running")
    write_json(out_dir / "run_started.json", started)

    def checkpoint(step: int, elapsed: float) -> None:
        state = {
            "step": step,
            "logits": [logits.detach().cpu().clone() for logits in mask.logits],
            "optimiser": optimiser.state_dict(),
            "samplers": {name: s.state_dict() for name, s in samplers.items()},
            "rng": _rng_state(),
            "identity": identity,
            "elapsed_s": elapsed,
        }
        save_checkpoint(last_ckpt, state)

    def keep_step_mask(step: int) -> None:
        # written before the step's checkpoint: a resumed run has every step mask up to it (later
        # ones are rewritten identically, the resumed steps being bit-identical)
        save_mask(ckpt_dir / f"step-{step:06d}.safetensors", mask, base_model=str(model), binary=True,
                  model_type=lm_model.config.model_type, step=str(step), sparsity=f"{mask.sparsity():.5f}",
                  provenance=started)  # what trained it: a selected step mask says so like the final one

    def validate() -> dict:
        lm.eval()
        values = {
            "val_targetkg_ppl": kg_statistics(lm, ["remaining"], target_enc, config.eval_batch_size,
                                              data.prefix["targetkg"])["remaining"]["ppl"],
            "val_controlkg_ppl": kg_statistics(lm, ["remaining"], val_enc, config.eval_batch_size,
                                               data.prefix["controlkg_val"])["remaining"]["ppl"],
            "val_controllm_ppl": lm_perplexity(lm, ["remaining"], val_text, config.eval_lm_batch_size,
                                               data.prefix["controllm"])["remaining"],
        }
        lm.train()
        return values

    t0 = time.perf_counter()
    lm.train()
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, disable=not progress,
               desc=f"train {Path(out_dir).name}", dynamic_ncols=True)
    progress_log = ProgressLog(log, f"train {out_dir.name}", config.steps, log_every, log_seconds, start=start_step)
    step_times = []
    for step_index in bar:
        step = step_index + 1
        t_step = time.perf_counter()
        lr, lam_reg, terms, sparsity_term, total = mask_step(lm, optimiser, config, samplers, data, step_index)
        step_times.append(time.perf_counter() - t_step)
        if not math.isfinite(float(total.detach())):
            raise KcsError(f"{out_dir}: the loss became {float(total.detach())} at step {step} (terms: "
                           + ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in terms.items())
                           + "); the run diverged: lower lr or check the inputs (no mask was written)")

        row = {
            "step": step, "lr": lr, "lambda_reg": lam_reg, "loss": float(total.detach()),
            "loss_targetkg": _value(terms, "targetkg"), "loss_controlkg": _value(terms, "controlkg"),
            "loss_controllm": _value(terms, "controllm"), "loss_expression": _value(terms, "expression"),
            "loss_sparsity": float(sparsity_term.detach()), "sparsity": mask.sparsity(),
        }
        if step == 1 or step % config.validate_every == 0 or step == config.steps:
            row.update(validate())
        train_log.write(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", tkg=f"{row['loss_targetkg']:.3f}", sparsity=f"{row['sparsity']:.4f}")
        progress_log.update(step, **{k: v for k, v in row.items() if k not in ("step", "lr")})
        last = step == config.steps
        if config.keep_step_masks and (step % (config.step_mask_every or config.checkpoint_every) == 0 or last):
            keep_step_mask(step)
        if step % config.checkpoint_every == 0 or last:
            checkpoint(step, elapsed_before + time.perf_counter() - t0)
    bar.close()
    train_log.close()

    elapsed = elapsed_before + time.perf_counter() - t0
    record = provenance(config=config.to_dict(), seed=seed, model=str(model), inputs=fingerprint,
                        blocks=blocks, granularity=config.granularity, steps=config.steps,
                        elapsed_s=elapsed,
                        seconds_per_step_this_session=(sum(step_times) / len(step_times)) if step_times else None,
                        final_sparsity=mask.sparsity(), device=str(dev), caches=data.cache_report())
    save_mask(final_mask, mask, base_model=str(model), model_type=lm_model.config.model_type, provenance=record)
    write_json(out_dir / "run.json", record, finite=True)
    # the run is complete (mask.safetensors + run.json): its resume state (logits and two Adam
    # moments, 3x the mask) is dead weight, ~570 GB over the paper's grid
    last_ckpt.unlink(missing_ok=True)
    (out_dir / "run_started.json").unlink(missing_ok=True)
    return final_mask


def mask_optimiser(mask: WeightMask, lr: float) -> torch.optim.Adam:
    """Adam on the logits (docs/method.md 2.3), fused: one kernel over all matrices instead of
    five per matrix (2.5x faster on a CPU, measured on 53M logits)."""
    return torch.optim.Adam(mask.parameters(), lr=lr, fused=True)


def mask_step(lm: MaskedLM, optimiser: torch.optim.Optimizer, config: TrainConfig, samplers: dict,
              data: TrainingData, step_index: int):
    """One optimiser step on the mask logits; returns (lr, lambda_reg, loss terms, density, total loss)."""
    lr = config.lr * objectives.warmup_factor(step_index, config.steps, config.warmup_frac)
    for group in optimiser.param_groups:
        group["lr"] = lr
    lam_reg = objectives.lambda_reg(step_index, config.steps, config.lambda_reg_init, config.lambda_reg_final)
    lm.mask.noise_scale = objectives.noise_scale(step_index, config.steps, config.noise_scale_init, config.noise_scale_final)
    # zeroed, not freed: the gradients accumulate in place in the same buffers every step
    optimiser.zero_grad(set_to_none=False)
    terms = _loss_terms(lm, config, samplers, data)
    density = lm.mask.expected_density()
    total = sum(terms.values()) + (lam_reg * density if config.use_sparsity else 0.0)
    total.backward()
    optimiser.step()
    return lr, lam_reg, terms, density, total


def _loss_terms(lm: MaskedLM, config: TrainConfig, samplers: dict, data: TrainingData) -> dict[str, torch.Tensor]:
    """Each term runs its own forward pass of the masked blocks, so each draws its own mask sample
    (docs/method.md 1.4); the frozen prefix below them comes from the caches."""
    dev = lm.device
    terms: dict[str, torch.Tensor] = {}
    if config.use_targetkg or config.use_expression:
        rows = samplers["targetkg"].next()
        batch = data.targetkg.subset(rows).to(dev)
        inputs = data.prefix["targetkg"].block_inputs(rows, batch.input_ids, batch.attention_mask)
        if config.use_targetkg:
            logits = lm.logits_at("remaining", batch.input_ids, batch.attention_mask,
                                  batch.kl_index(config.kg_kl_position), inputs=inputs)
            terms["targetkg"] = config.lambda_targetkg * objectives.suppression_kl(logits)
        if config.use_expression:
            logits = lm.logits_at("subnetwork", batch.input_ids, batch.attention_mask, batch.last_index - 1, inputs=inputs)
            terms["expression"] = config.lambda_expression * objectives.expression_loss(logits, batch.gold_last())
    if config.use_controlkg:
        rows = samplers["controlkg"].next()
        batch = data.controlkg.subset(rows).to(dev)
        inputs = data.prefix["controlkg"].block_inputs(rows, batch.input_ids, batch.attention_mask)
        hidden = lm.hidden_at("remaining", batch.input_ids, batch.attention_mask,
                              batch.kl_index(config.kg_kl_position), inputs=inputs)
        terms["controlkg"] = config.lambda_controlkg * objectives.maintenance_kl(
            lm.head(hidden), hidden, *data.reference["controlkg"].statistics(rows))
    if config.use_controllm:
        rows = samplers["controllm"].next()
        ids = data.text[rows].to(dev)
        hidden = lm.upper("remaining", data.prefix["controllm"].block_inputs(rows, ids)).flatten(0, 1)
        expected, offset = data.reference["controllm"].statistics(rows)
        terms["controllm"] = config.lambda_controllm * objectives.maintenance_kl(
            lm.head(hidden), hidden, expected.flatten(0, 1), offset.flatten())
    return terms


def _check_same_run(out_dir: Path, saved: dict, current: dict) -> None:
    for key in ("model", "seed", "inputs"):
        if saved[key] != current[key]:
            raise KcsError(
                f"{out_dir}: its checkpoint was made with a different {key} ({saved[key]!r} vs now {current[key]!r}); "
                "resume with the same arguments, or use a new --out directory"
            )
    for key, value in current["config"].items():
        if saved["config"].get(key) != value:
            raise KcsError(
                f"{out_dir}: its checkpoint was made with config {key}={saved['config'].get(key)!r}, now {value!r}; "
                "resume with the same config, or use a new --out directory"
            )


def _value(terms: dict[str, torch.Tensor], name: str) -> float:
    return float(terms[name].detach()) if name in terms else 0.0
