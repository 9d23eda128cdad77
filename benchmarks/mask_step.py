"""Seconds per step and peak memory: a mask-training step (with and without kcs's caches) vs an
ordinary fine-tuning step, and the evaluation of one checkpoint before / after the caches.

All on a randomly initialised model of a real architecture's shape (no download), in one process,
with data sets sized like a real run (`--data demo`: the offline demo's; `--data paper`: the
paper's, for GPU machines):
- mask step, cached: `kcs.training.mask_step` on `kcs.training.TrainingData` as `kcs train` builds
  it: the frozen prefix below the first masked block and the full model's output statistics are
  cached within their budgets (rows past a budget are recomputed; the table says how many fit);
- mask step, uncached: the same with both budgets 0 (every term runs the whole model, and the
  full model's ControlKG / ControlLM distributions are recomputed every step: the pre-cache step);
- fine-tuning step: the same three batches through the whole model with a causal-LM loss,
  backward into every weight, AdamW.
- evaluation of one checkpoint (remaining model on TargetKG, ControlKG val and ControlLM test,
  subnetwork on TargetKG): before = each view runs the whole model; after = the evaluation sets'
  prefix cached once (its build time is reported apart: it is shared by every checkpoint).

Timings interleave the kinds of step after warm-up and report medians, so drift affects all alike.
Peak memory: CUDA's max_memory_allocated per kind, less what the earlier kinds' models
hold; on the CPU each kind runs once more in a fresh
child process and reports its peak resident set size (VmHWM, reset at the child's start).

    python benchmarks/mask_step.py --data demo --out benchmarks/results/cpu.json        # CPU
    python benchmarks/mask_step.py --data paper --device cuda --shape gpt2 --shape gpt2-medium \\
        --shape gpt2-large --shape gpt2-xl --out benchmarks/results/gpu.json          # GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from kcs.config import TrainConfig
from kcs.encoding import KGEncoding
from kcs.evaluation import kg_statistics, lm_perplexity
from kcs.masking import MaskedLM, WeightMask
from kcs.models import num_blocks, resolve_device, select_blocks
from kcs.prefix import PrefixCache
from kcs.provenance import package_versions
from kcs.shapes import KNOWN_SHAPES, known_config
from kcs.training import CyclingSampler, TrainingData, mask_optimiser, mask_step

SHAPES = KNOWN_SHAPES  # kcs/shapes.py: GPT-2 small..XL, SmolLM2-135M and the tiny shapes of the test


@dataclasses.dataclass(frozen=True)
class DataSize:
    """Rows of each data set and the batch sizes of a real run."""

    targetkg: int  # facts (one batch: the whole TargetKG)
    controlkg: int  # ControlKG training facts
    controlkg_val: int
    controllm: int  # ControlLM training blocks
    controllm_test: int  # ControlLM test blocks
    block_size: int
    controlkg_batch: int
    controllm_batch: int
    kg_tokens: int = 12  # the longest KG sentence; rows are 7..kg_tokens long (right padded)


DATA = {
    # configs/demo.yaml: a paper TargetKG (11-19 facts), the demo's WordNet ControlKG, sotu text
    "demo": DataSize(targetkg=16, controlkg=400, controlkg_val=50, controllm=100, controllm_test=30,
                     block_size=128, controlkg_batch=32, controllm_batch=2),
    # config.yaml: WordNet ControlKG 4,400 train / 50 val, WikiText-2 train 4,656 x 512, test[:20%]
    "paper": DataSize(targetkg=16, controlkg=4400, controlkg_val=50, controllm=4656, controllm_test=56,
                      block_size=512, controlkg_batch=250, controllm_batch=10),
    "tiny": DataSize(targetkg=6, controlkg=20, controlkg_val=8, controllm=12, controllm_test=4,
                     block_size=16, controlkg_batch=4, controllm_batch=2),
}


def build(shape: str, device: torch.device):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with device:  # initialised where it runs: GPT-2 XL's random init takes minutes on a CPU
        model = AutoModelForCausalLM.from_config(known_config(shape))
    return model.eval().requires_grad_(False)


def synthetic_kg(n: int, max_tokens: int, vocab: int, generator: torch.Generator) -> KGEncoding:
    lengths = torch.randint(7, max_tokens + 1, (n,), generator=generator)
    ids = torch.randint(0, vocab, (n, max_tokens), generator=generator)
    attention = (torch.arange(max_tokens)[None, :] < lengths[:, None]).long()
    return KGEncoding(ids * attention, attention, lengths - 1, lengths - 1)


def make_data(size: DataSize, vocab: int) -> dict:
    gen = torch.Generator().manual_seed(1)
    return {
        "targetkg": synthetic_kg(size.targetkg, size.kg_tokens, vocab, gen),
        "controlkg": synthetic_kg(size.controlkg, size.kg_tokens, vocab, gen),
        "controlkg_val": synthetic_kg(size.controlkg_val, size.kg_tokens, vocab, gen),
        "controllm": torch.randint(0, vocab, (size.controllm, size.block_size), generator=gen),
        "controllm_test": torch.randint(0, vocab, (size.controllm_test, size.block_size), generator=gen),
    }


def train_config(size: DataSize, cached: bool, args) -> TrainConfig:
    return TrainConfig(steps=10_000, targetkg_batch_size=250, controlkg_batch_size=size.controlkg_batch,
                       controllm_batch_size=size.controllm_batch, controllm_block_size=size.block_size,
                       top_k_blocks=args.top_k_blocks,
                       prefix_cache_mb=args.prefix_cache_mb if cached else 0,
                       reference_cache_mb=args.reference_cache_mb if cached else 0)


def masked_lm(model, args) -> MaskedLM:
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model), args.top_k_blocks))
    return MaskedLM(model, mask).train()


def make_mask_runner(model, size: DataSize, cached: bool, args):
    """The step `kcs train` takes; returns (run, seconds to build the caches, cache report, mask logits)."""
    data = make_data(size, model.get_output_embeddings().weight.shape[0])
    config = train_config(size, cached, args)
    lm = masked_lm(model, args)
    start = time.perf_counter()
    training = TrainingData.build(lm, config, data["targetkg"], data["controlkg"], data["controllm"], data["controlkg_val"])
    build_s = time.perf_counter() - start
    optimiser = mask_optimiser(lm.mask, config.lr)
    samplers = {"targetkg": CyclingSampler(size.targetkg, 250, 1),
                "controlkg": CyclingSampler(size.controlkg, size.controlkg_batch, 2),
                "controllm": CyclingSampler(size.controllm, size.controllm_batch, 3)}
    state = {"step": 1000}

    def run():
        mask_step(lm, optimiser, config, samplers, training, state["step"])
        state["step"] += 1

    return run, build_s, training.cache_report(), lm.mask.num_logits


def make_finetune_runner(model, size: DataSize):
    data = make_data(size, model.get_output_embeddings().weight.shape[0])
    model.requires_grad_(True).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)  # as fast as AdamW gets
    target, control = data["targetkg"], data["controlkg"].subset(slice(0, size.controlkg_batch))
    batches = [(target.input_ids, target.attention_mask), (control.input_ids, control.attention_mask),
               (data["controllm"][: size.controllm_batch], None)]
    device = next(model.parameters()).device

    def run():
        optimiser.zero_grad(set_to_none=False)
        loss = 0.0
        for ids, att in batches:
            ids = ids.to(device)
            labels = ids if att is None else ids.masked_fill(att.to(device) == 0, -100)
            loss = loss + model(input_ids=ids, attention_mask=None if att is None else att.to(device), labels=labels).loss
        loss.backward()
        optimiser.step()

    return run


def make_eval_runner(model, size: DataSize, cached: bool, args):
    """One checkpoint's evaluation: remaining on the three sets, subnetwork on the TargetKG."""
    data = make_data(size, model.get_output_embeddings().weight.shape[0])
    lm = masked_lm(model, args).eval()
    sets = {"targetkg": data["targetkg"], "controlkg_val": data["controlkg_val"]}
    prefix, build_s = {}, 0.0
    if cached:
        start = time.perf_counter()
        budget = args.prefix_cache_mb * 2**20
        for name, enc in sets.items():
            prefix[name] = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget)
        prefix["controllm_test"] = PrefixCache.for_lm(lm, data["controllm_test"], None, budget)
        build_s = time.perf_counter() - start
    else:  # before the caches: every view ran the whole model
        lm.first_block = lm._upper.first_block = 0

    def run():
        kg_statistics(lm, ["remaining", "subnetwork"], sets["targetkg"], 250, prefix.get("targetkg"))
        kg_statistics(lm, ["remaining"], sets["controlkg_val"], 250, prefix.get("controlkg_val"))
        lm_perplexity(lm, ["remaining"], data["controllm_test"], args.eval_lm_batch, prefix.get("controllm_test"))

    return run, build_s


KINDS = ("mask_cached", "mask_uncached", "finetune", "eval_cached", "eval_uncached")


def make_runner(kind: str, model, size: DataSize, args):
    if kind == "finetune":
        return make_finetune_runner(model, size), {}
    if kind.startswith("mask"):
        run, build_s, report, n_logits = make_mask_runner(model, size, kind == "mask_cached", args)
        return run, {"cache_build_s": build_s, "caches": report, "mask_logits": n_logits}
    run, build_s = make_eval_runner(model, size, kind == "eval_cached", args)
    return run, {"cache_build_s": build_s}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak_rss() -> None:
    # A child inherits its parent's peak RSS (even across exec); Linux lets a process reset it.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child_peak(kind, shape, size, args, queue):
    _reset_peak_rss()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads) if args.threads else None
    run, _ = make_runner(kind, build(shape, device), size, args)
    run()
    run()
    queue.put(_peak_rss_mb())


def cpu_peak_mb(kind, shape, size, args) -> float:
    """Peak resident memory of a fresh process that builds the model and its data and runs two steps."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_peak, args=(kind, shape, size, args, queue))
    proc.start()
    peak = queue.get()
    proc.join()
    return peak


def measure(shape: str, args) -> dict:
    device = resolve_device(args.device)
    size = DATA[args.data]
    if args.controllm_blocks:
        size = dataclasses.replace(size, controllm=args.controllm_blocks)
    kinds = [k for k in KINDS if not (args.no_eval and k.startswith("eval"))]
    peaks = {}
    if device.type != "cuda" and not args.no_memory:
        peaks = {kind: cpu_peak_mb(kind, shape, size, args) for kind in kinds}
    runners, info, frozen = {}, {}, None
    for kind in kinds:  # the mask and evaluation kinds share one frozen model; fine-tuning changes its own
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            held = torch.cuda.memory_allocated()  # the earlier kinds' models: not this kind's memory
        if kind == "finetune":
            model = build(shape, device)
        else:
            model = frozen = frozen if frozen is not None else build(shape, device)
        runners[kind], info[kind] = make_runner(kind, model, size, args)
        for _ in range(args.warmup):
            runners[kind]()
        sync(device)
        if device.type == "cuda":
            peaks[kind] = (torch.cuda.max_memory_allocated() - held) / 2**20
    times = {kind: [] for kind in kinds}
    for _ in range(args.repeats):  # interleaved, so drift affects every kind alike
        for kind in kinds:
            sync(device)
            start = time.perf_counter()
            runners[kind]()
            sync(device)
            times[kind].append(time.perf_counter() - start)
    median = {kind: statistics.median(values) for kind, values in times.items()}
    result = {
        "shape": shape, "device": str(device), "data": args.data, "sizes": dataclasses.asdict(size),
        "masked_blocks": args.top_k_blocks or "top half", "mask_logits": info["mask_cached"]["mask_logits"],
        "seconds": median, "peak_mb": peaks or None,
        "ratio_mask_cached_over_finetune": median["mask_cached"] / median["finetune"],
        "ratio_mask_uncached_over_finetune": median["mask_uncached"] / median["finetune"],
        "speedup_mask_cached": median["mask_uncached"] / median["mask_cached"],
        "caches": info["mask_cached"]["caches"],
        "cache_build_s": {kind: info[kind]["cache_build_s"] for kind in kinds if "cache_build_s" in info[kind]},
        "repeats": args.repeats,
        "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }
    if not args.no_eval:
        result["speedup_eval_cached"] = median["eval_uncached"] / median["eval_cached"]
    return result


def _cache_summary(report: dict) -> str:
    return ", ".join(f"{name} {r['rows']}/{r['of']}" for name, r in report.items())


def print_table(rows: list[dict]) -> None:
    print("| shape | device | data | mask step cached (s) | uncached (s) | fine-tune (s) | cached / fine-tune | "
          "uncached / fine-tune | peak MB cached / uncached / fine-tune | eval cached (s) | eval uncached (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        s, p = r["seconds"], r["peak_mb"]
        mem = f"{p['mask_cached']:.0f} / {p['mask_uncached']:.0f} / {p['finetune']:.0f}" if p else "-"
        ev = f"{s['eval_cached']:.3f} | {s['eval_uncached']:.3f}" if "eval_cached" in s else "- | -"
        print(f"| {r['shape']} | {r['device']} | {r['data']} | {s['mask_cached']:.3f} | {s['mask_uncached']:.3f} | "
              f"{s['finetune']:.3f} | {r['ratio_mask_cached_over_finetune']:.2f} | "
              f"{r['ratio_mask_uncached_over_finetune']:.2f} | {mem} | {ev} |")
    for r in rows:
        print(f"{r['shape']}: rows cached: {_cache_summary(r['caches'])}; cache build "
              + ", ".join(f"{k} {v:.1f} s" for k, v in r["cache_build_s"].items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="model shape(s) (default: gpt2, smollm2-135m)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", choices=sorted(DATA), default="demo", help="data set and batch sizes of a real run")
    parser.add_argument("--top-k-blocks", type=int, help="mask the top k blocks (default: the top half, the paper's)")
    parser.add_argument("--prefix-cache-mb", type=int, default=TrainConfig().prefix_cache_mb)
    parser.add_argument("--reference-cache-mb", type=int, default=TrainConfig().reference_cache_mb)
    parser.add_argument("--controllm-blocks", type=int,
                        help="ControlLM training blocks (default: the data set's); a cached step costs the same "
                             "for any pool that fits the budget, so a small pool times a fully cached paper run")
    parser.add_argument("--eval-lm-batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads in the memory child processes")
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory child processes")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation timings")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args(argv)
    rows = [measure(shape, args) for shape in (args.shape or ["gpt2", "smollm2-135m"])]
    print_table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": rows, "versions": package_versions(), "machine": platform.machine(),
                                        "threads": torch.get_num_threads(), "argv": sys.argv}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
