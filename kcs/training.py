"""Mask training: learn which weights to remove so that the remaining model forgets a TargetKG
while keeping its ControlKG and ControlLM behaviour (docs/method.md section 2).

A run directory holds everything needed to resume after a kill at any moment: the last
checkpoint (logits, optimiser state, RNG states, data-order state, step) is replaced atomically,
and a resumed run ends with the same mask, bit for bit on the CPU, as an uninterrupted one.

`train_mask` runs four stages, each its own function: `resume_state` (does the run directory's
checkpoint belong to this run, and from which step and state does it go on), `build_run` (model,
mask, optimiser, samplers, data and caches; `restore` puts a checkpoint back), `train_steps` (the
step loop with its log, validations, step masks and checkpoints) and `finish_run` (the final mask
and run.json, written nowhere else).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.autograd.graph import increment_version
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
from kcs.seeding import rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

LOG_COLUMNS = [
    "step", "lr", "lambda_reg", "loss", "loss_targetkg", "loss_controlkg", "loss_controllm",
    "loss_expression", "loss_sparsity", "sparsity", "val_targetkg_ppl", "val_controlkg_ppl", "val_controllm_ppl",
]

__all__ = ["train_mask", "resume_state", "run_identity", "build_run", "restore", "train_steps", "finish_run",
           "mask_step", "mask_optimiser", "CyclingSampler", "TrainingData"]


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
    """The per-step CSV log, the run's labels as its leading columns (so the file says which run it is);
    on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int, labels: dict | None = None):
        self.path = path
        self.labels = dict(labels or {})
        columns = [*self.labels, *LOG_COLUMNS]
        rows = []
        if resume_step > 0 and path.exists():
            with path.open(newline="") as handle:
                rows = [{**row, **self.labels} for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=columns)

    def write(self, row: dict) -> None:
        self.writer.writerow({**self.labels, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def train_mask(model: str, targetkg: str | os.PathLike, controlkg: str | os.PathLike,
               controllm: Sequence[str | os.PathLike], out_dir: str | os.PathLike, config: TrainConfig,
               seed: int = 42, controlkg_val: str | os.PathLike | None = None, device: str | None = None,
               progress: bool = True, restart_if_changed: bool = False, log_every: int = 100,
               log_seconds: float = 60.0, prefix_store: str | os.PathLike | None = None,
               labels: dict | None = None) -> Path:
    """Train (or resume, or recognise as finished) a mask; returns the path of the final mask file.

    `labels`: which run this is (e.g. model, kg, variant; kcs.labels), written with `seed` and
    `method: learned` into every mask of the run and as the leading columns of its log.

    `prefix_store`: a folder where the frozen prefix's hidden states are shared with the other
    runs and evaluations of the same model and data (kcs.prefix.PrefixStore; same numbers).

    A progress line (step, losses, sparsity, rate, ETA) is logged every `log_every` steps or
    `log_seconds` seconds, whichever comes first, and at the first and last step, bar or no bar.

    A checkpoint made with other arguments is refused, or, with `restart_if_changed` (what a
    pipeline wants when its inputs changed), discarded with the rest of the run directory.
    """
    files = RunFiles(Path(out_dir))
    if files.is_complete():
        log.info("%s is complete; nothing to do", files.final_mask)
        return files.final_mask
    identity = run_identity(model, seed, config, targetkg, controlkg, controllm, controlkg_val)
    resume = resume_state(files.root, identity, restart_if_changed)
    run = build_run(model, seed, config, identity, targetkg, controlkg, controllm, controlkg_val, device, prefix_store)
    run.labels = {**(labels or {}), "seed": seed, "method": "learned"}
    if resume.checkpoint is not None:
        restore(run, resume.checkpoint)
        log.info("resuming %s from step %d", files.root, resume.step)
    elapsed, step_times = train_steps(run, files, resume, progress=progress, log_every=log_every,
                                      log_seconds=log_seconds)
    return finish_run(run, files, elapsed, step_times)


# -- the run directory and resuming -----------------------------------------------------------

class RunFiles:
    """The files of one run directory. A run is complete when it has both the final mask and run.json."""

    def __init__(self, root: Path):
        self.root = root
        self.final_mask = root / "mask.safetensors"
        self.record = root / "run.json"
        self.started = root / "run_started.json"  # a session in progress
        self.log = root / "train_log.csv"
        self.checkpoints = root / "checkpoints"
        self.last_checkpoint = self.checkpoints / "last.safetensors"
        self.legacy_checkpoint = self.checkpoints / "last.pt"  # earlier kcs pickled its checkpoints; never unpickled now

    def is_complete(self) -> bool:
        return self.final_mask.exists() and self.record.exists()


def run_identity(model: str, seed: int, config: TrainConfig, targetkg: str | os.PathLike, controlkg: str | os.PathLike,
                 controllm: Sequence[str | os.PathLike], controlkg_val: str | os.PathLike | None = None) -> dict:
    """What makes two runs the same run: model, seed, config and the inputs' SHA-256 digests. A
    checkpoint records it, and only a run with the same identity resumes from it. The reasons given for
    deviating from the paper (`deviations`) change nothing computed, so a run resumes across edits of them."""
    inputs = {"targetkg": targetkg, "controlkg": controlkg, "controlkg_val": controlkg_val}
    fingerprint = {k: file_sha256(v) for k, v in inputs.items() if v is not None}
    fingerprint.update({f"controllm[{i}]": file_sha256(p) for i, p in enumerate(controllm)})
    return {"model": str(model), "seed": seed, "config": config.model_dump(exclude={"deviations"}), "inputs": fingerprint}


@dataclass(frozen=True)
class Resume:
    """Where a run starts: step 0 with nothing to restore, or a checkpoint's step and state."""

    step: int = 0
    checkpoint: dict | None = None
    elapsed_s: float = 0.0  # training time of the earlier sessions


def resume_state(out_dir: str | os.PathLike, identity: dict, restart_if_changed: bool = False) -> Resume:
    """Whether the run in `out_dir` (of `identity`, see `run_identity`) resumes, and from what.

    No checkpoint: step 0. A checkpoint of the same run: its step and state. A checkpoint of another
    run, a damaged one, or a pickled one of an earlier kcs: a KcsError, or with `restart_if_changed`
    step 0, after deleting the directory's checkpoints, log and run_started.json.
    """
    files = RunFiles(Path(out_dir))
    legacy = files.legacy_checkpoint
    if legacy.exists() and not restart_if_changed:
        raise KcsError(f"{legacy}: a pickled checkpoint, which kcs no longer loads (unpickling a file can run "
                       "code); delete it to start the run over, run with --restart-if-changed, or use a new --out")
    if not (files.last_checkpoint.exists() or legacy.exists()):
        return Resume()
    try:
        if not files.last_checkpoint.exists():
            raise KcsError(f"{legacy}: a pickled checkpoint, not loaded")
        checkpoint = load_checkpoint(files.last_checkpoint)
        _check_same_run(files.root, checkpoint["identity"], identity)
    except KcsError as err:
        if not restart_if_changed:
            raise
        log.warning("%s; starting over", err)
        for stale in (files.checkpoints, files.log, files.started):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        return Resume()
    return Resume(checkpoint["step"], checkpoint, checkpoint.get("elapsed_s", 0.0))


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


# -- building a run, and its checkpoint state ---------------------------------------------------

@dataclass
class MaskRun:
    """What the step loop works on: the masked model, its optimiser, data samplers and data."""

    model: str  # as given (hub id or folder): recorded in every mask file
    seed: int
    config: TrainConfig
    identity: dict  # run_identity: saved in every checkpoint
    lm: MaskedLM
    optimiser: torch.optim.Optimizer
    samplers: dict[str, CyclingSampler]
    data: TrainingData
    targetkg: KGEncoding  # validated on, besides the two below
    controlkg_val: KGEncoding
    val_text: torch.Tensor
    blocks: list[int]
    labels: dict = field(default_factory=dict)  # which run this is (kcs.labels): in every mask and log row

    @property
    def mask(self) -> WeightMask:
        return self.lm.mask


def build_run(model: str, seed: int, config: TrainConfig, identity: dict, targetkg: str | os.PathLike,
              controlkg: str | os.PathLike, controllm: Sequence[str | os.PathLike],
              controlkg_val: str | os.PathLike | None = None, device: str | None = None,
              prefix_store: str | os.PathLike | None = None) -> MaskRun:
    """Seed, load the model, make its mask (at init_p) and optimiser, read and encode the data, fill the caches."""
    seed_everything(seed)
    lm_model, tokenizer = load_model(model, device=device)
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
    val_text = text[:min(config.eval_controllm_blocks, text.shape[0])]

    samplers = {
        "targetkg": CyclingSampler(len(target_enc), config.targetkg_batch_size, seed + 1),
        "controlkg": CyclingSampler(len(control_enc), config.controlkg_batch_size, seed + 2),
        "controllm": CyclingSampler(text.shape[0], config.controllm_batch_size, seed + 3),
    }
    data = TrainingData.build(lm, config, target_enc, control_enc, text, val_enc,
                              PrefixStore(prefix_store) if prefix_store else None)
    log.info("caches: %s", data.cache_report())
    return MaskRun(str(model), seed, config, identity, lm, optimiser, samplers, data, target_enc, val_enc, val_text,
                   blocks)


def checkpoint_state(run: MaskRun, step: int, elapsed_s: float) -> dict:
    """Everything `restore` needs to go on after `step` exactly as an uninterrupted run would."""
    return {
        "step": step,
        "logits": [logits.detach().cpu().clone() for logits in run.mask.logits],
        "optimiser": run.optimiser.state_dict(),
        "samplers": {name: s.state_dict() for name, s in run.samplers.items()},
        "rng": rng_state(),
        "identity": run.identity,
        "elapsed_s": elapsed_s,
    }


def restore(run: MaskRun, checkpoint: dict) -> None:
    """Put a checkpoint's logits, Adam moments, data order and RNG states back into a built run."""
    with torch.no_grad():
        for logits, saved in zip(run.mask.logits, checkpoint["logits"]):
            logits.copy_(saved.to(logits.device))
    run.optimiser.load_state_dict(checkpoint["optimiser"])
    for name, sampler in run.samplers.items():
        sampler.load_state_dict(checkpoint["samplers"][name])
    set_rng_state(checkpoint["rng"])  # last: nothing above draws from the generators


# -- the step loop, and the end of a run ---------------------------------------------------------

def train_steps(run: MaskRun, files: RunFiles, resume: Resume, *, progress: bool = True, log_every: int = 100,
                log_seconds: float = 60.0) -> tuple[float, list[float]]:
    """Steps resume.step + 1 .. config.steps, each logged, with validations, step masks and checkpoints.

    Returns the training seconds of all sessions and this session's seconds per step.
    """
    config, out_dir = run.config, files.root
    train_log, started = _open_session(run, files, resume.step)
    t0 = time.perf_counter()
    run.lm.train()
    bar = tqdm(range(resume.step, config.steps), initial=resume.step, total=config.steps, disable=not progress,
               desc=f"train {out_dir.name}", dynamic_ncols=True)
    progress_log = ProgressLog(log, f"train {out_dir.name}", config.steps, log_every, log_seconds, start=resume.step)
    step_times = []
    for step_index in bar:
        step = step_index + 1
        t_step = time.perf_counter()
        lr, lam_reg, terms, sparsity_term, total = mask_step(run.lm, run.optimiser, config, run.samplers, run.data,
                                                             step_index)
        step_times.append(time.perf_counter() - t_step)
        row = _log_row(out_dir, step, lr, lam_reg, terms, sparsity_term, total, run.mask)
        if step == 1 or step % config.validate_every == 0 or step == config.steps:
            row.update(_validate(run))
        train_log.write(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", tkg=f"{row['loss_targetkg']:.3f}", sparsity=f"{row['sparsity']:.4f}")
        progress_log.update(step, **{k: v for k, v in row.items() if k not in ("step", "lr")})
        last = step == config.steps
        if config.keep_step_masks and (step % (config.step_mask_every or config.checkpoint_every) == 0 or last):
            _keep_step_mask(run, files, step, started)
        if step % config.checkpoint_every == 0 or last:
            save_checkpoint(files.last_checkpoint, checkpoint_state(run, step, resume.elapsed_s + time.perf_counter() - t0))
    bar.close()
    train_log.close()
    return resume.elapsed_s + time.perf_counter() - t0, step_times


def _open_session(run: MaskRun, files: RunFiles, start_step: int) -> tuple[TrainLog, dict]:
    """Make the run directory, open its log at `start_step` and record the session (run_started.json)."""
    files.root.mkdir(parents=True, exist_ok=True)
    files.checkpoints.mkdir(exist_ok=True)
    train_log = TrainLog(files.log, start_step, run.labels)
    started = provenance(config=run.config.to_dict(), seed=run.seed, model=run.model, inputs=run.identity["inputs"],
                         deviations=run.config.deviations_from_paper(), status="running")
    write_json(files.started, started)
    return train_log, started


def _log_row(out_dir: Path, step: int, lr: float, lam_reg: float, terms: dict[str, torch.Tensor],
             sparsity_term: torch.Tensor, total: torch.Tensor, mask: WeightMask) -> dict:
    """The step's log row; a loss that is not finite stops the run before anything is written."""
    if not math.isfinite(float(total.detach())):
        raise KcsError(f"{out_dir}: the loss became {float(total.detach())} at step {step} (terms: "
                       + ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in terms.items())
                       + "); the run diverged: lower lr or check the inputs (no mask was written)")
    return {
        "step": step, "lr": lr, "lambda_reg": lam_reg, "loss": float(total.detach()),
        "loss_targetkg": _value(terms, "targetkg"), "loss_controlkg": _value(terms, "controlkg"),
        "loss_controllm": _value(terms, "controllm"), "loss_expression": _value(terms, "expression"),
        "loss_sparsity": float(sparsity_term.detach()), "sparsity": mask.sparsity(),
    }


def _validate(run: MaskRun) -> dict:
    """Remaining-model perplexities on the TargetKG and the validation ControlKG and ControlLM."""
    lm, config, prefix = run.lm, run.config, run.data.prefix
    lm.eval()
    values = {
        "val_targetkg_ppl": kg_statistics(lm, ["remaining"], run.targetkg, config.eval_batch_size,
                                          prefix["targetkg"])["remaining"]["ppl"],
        "val_controlkg_ppl": kg_statistics(lm, ["remaining"], run.controlkg_val, config.eval_batch_size,
                                           prefix["controlkg_val"])["remaining"]["ppl"],
        "val_controllm_ppl": lm_perplexity(lm, ["remaining"], run.val_text, config.eval_lm_batch_size,
                                           prefix["controllm"])["remaining"],
    }
    lm.train()
    return values


def _keep_step_mask(run: MaskRun, files: RunFiles, step: int, started: dict) -> None:
    # written before the step's checkpoint: a resumed run has every step mask up to it (later
    # ones are rewritten identically, the resumed steps being bit-identical)
    # what trained it (provenance): a selected step mask says so like the final one
    mask = run.mask
    save_mask(files.checkpoints / f"step-{step:06d}.safetensors", mask, base_model=run.model, binary=True, labels=run.labels,
              deviations=started["deviations"], model_type=run.lm.model.config.model_type, step=str(step),
              sparsity=f"{mask.sparsity():.5f}", provenance=started)


def finish_run(run: MaskRun, files: RunFiles, elapsed_s: float, step_times: list[float]) -> Path:
    """Write the final mask and run.json (the one place the final mask is written; the run is then
    complete) and drop the resume state; returns the final mask's path."""
    config, mask = run.config, run.mask
    record = provenance(config=config.to_dict(), seed=run.seed, model=run.model, inputs=run.identity["inputs"],
                        deviations=config.deviations_from_paper(), blocks=run.blocks, granularity=config.granularity,
                        steps=config.steps, elapsed_s=elapsed_s,
                        seconds_per_step_this_session=(sum(step_times) / len(step_times)) if step_times else None,
                        final_sparsity=mask.sparsity(), device=str(run.lm.device), caches=run.data.cache_report())
    save_mask(files.final_mask, mask, base_model=run.model, model_type=run.lm.model.config.model_type,
              provenance=record, labels=run.labels, deviations=record["deviations"])
    write_json(files.record, record, finite=True)
    # the run is complete (mask.safetensors + run.json): its resume state (logits and two Adam
    # moments, 3x the mask) is dead weight, ~570 GB over the paper's grid
    files.last_checkpoint.unlink(missing_ok=True)
    files.started.unlink(missing_ok=True)
    return files.final_mask


def mask_optimiser(mask: WeightMask, lr: float) -> torch.optim.Adam:
    """Adam on the logits (docs/method.md 2.3), fused: one kernel over all matrices instead of
    five per matrix (2.5x faster on a CPU, measured on 53M logits).

    A fused step writes the logits without bumping their autograd version counters (torch 2.13; the
    foreach and per-tensor steps do), and the mask keys its per-step caches on those counters
    (WeightMask.keep_probabilities): the hook bumps them after every step."""
    optimiser = torch.optim.Adam(mask.parameters(), lr=lr, fused=True)
    optimiser.register_step_post_hook(lambda opt, args, kwargs: increment_version(list(mask.logits)))
    return optimiser


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


def _value(terms: dict[str, torch.Tensor], name: str) -> float:
    return float(terms[name].detach()) if name in terms else 0.0
