"""Seconds per step and peak memory: one mask-training step vs one ordinary fine-tuning step.

Both steps see the same tokens (a TargetKG batch, a ControlKG batch and a ControlLM batch) in the
same process, on a randomly initialised model of a real architecture's shape (no download):
- mask step: kcs.training.mask_step (three remaining-model forwards, one backward into the mask
  logits, Adam on the logits; the frozen full model's outputs come from kcs's reference cache when
  they fit its budget, exactly as in `kcs train`);
- fine-tuning step: the same three forwards with a causal-LM loss, backward into every weight, AdamW.

Timings interleave the two kinds of step after warm-up and report medians. Peak memory: CUDA's
max_memory_allocated per kind; on the CPU each kind runs once more in a fresh child process and
reports its peak resident set size (VmHWM, reset at the child's start).

    python benchmarks/mask_step.py --shape gpt2 --shape smollm2-135m             # CPU-sized batches
    python benchmarks/mask_step.py --shape gpt2 --shape gpt2-xl --paper-batches  # GPU: the paper's batches
"""

from __future__ import annotations

import argparse
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
from kcs.masking import MaskedLM, WeightMask
from kcs.models import num_blocks, resolve_device, select_blocks
from kcs.provenance import package_versions
from kcs.training import CyclingSampler, ReferenceOutputs, mask_step

SHAPES = {
    "gpt2": dict(family="gpt2", n_layer=12, n_embd=768, n_head=12),
    "gpt2-medium": dict(family="gpt2", n_layer=24, n_embd=1024, n_head=16),
    "gpt2-large": dict(family="gpt2", n_layer=36, n_embd=1280, n_head=20),
    "gpt2-xl": dict(family="gpt2", n_layer=48, n_embd=1600, n_head=25),
    # SmolLM2-135M's shape (offline-resources.md): 30 layers, hidden 576, MLP 1536, 9 heads, 3 KV heads
    "smollm2-135m": dict(family="llama", num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
}


def build(shape: str, device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    spec = dict(SHAPES[shape])
    family = spec.pop("family")
    torch.manual_seed(0)
    if family == "gpt2":
        config = GPT2Config(vocab_size=50257, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **spec)
        model = GPT2LMHeadModel(config)
    else:
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **spec))
    return model.to(device).eval()


def synthetic_kg(n: int, length: int, vocab: int) -> KGEncoding:
    ids = torch.randint(0, vocab, (n, length))
    return KGEncoding(ids, torch.ones_like(ids), torch.full((n,), length - 1), torch.full((n,), length - 1))


def make_inputs(args, vocab):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    target = synthetic_kg(args.targetkg_batch, args.kg_length, vocab)
    control = synthetic_kg(args.controlkg_batch * 2, args.kg_length, vocab)
    text = torch.randint(0, vocab, (args.controllm_batch * 4, args.block_size), generator=gen)
    return target, control, text


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_mask_runner(model, args, device):
    vocab = model.get_output_embeddings().weight.shape[0]
    target, control, text = make_inputs(args, vocab)
    config = TrainConfig(steps=10_000, targetkg_batch_size=args.targetkg_batch, controlkg_batch_size=args.controlkg_batch,
                         controllm_batch_size=args.controllm_batch, controllm_block_size=args.block_size)
    model.requires_grad_(False)  # as kcs.models.load_model leaves it: only the mask logits train
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model)))
    lm = MaskedLM(model, mask).train()
    optimiser = torch.optim.Adam(mask.parameters(), lr=config.lr)
    samplers = {"targetkg": CyclingSampler(len(target), config.targetkg_batch_size, 1),
                "controlkg": CyclingSampler(len(control), config.controlkg_batch_size, 2),
                "controllm": CyclingSampler(text.shape[0], config.controllm_batch_size, 3)}
    reference = ReferenceOutputs(lm, config.reference_cache_mb * 2**20)
    reference.prepare(control, config.kg_kl_position, text, vocab, device)
    state = {"step": 1000, "cached": {"controlkg": reference.kg_cache is not None, "controllm": reference.text_cache is not None}}

    def run():
        mask_step(lm, optimiser, config, samplers, reference, target, control, text, state["step"])
        state["step"] += 1

    return run, state["cached"], mask.num_logits


def make_finetune_runner(model, args, device):
    vocab = model.get_output_embeddings().weight.shape[0]
    target, control, text = make_inputs(args, vocab)
    model.requires_grad_(True).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
    batches = [target.input_ids[: args.targetkg_batch], control.input_ids[: args.controlkg_batch], text[: args.controllm_batch]]

    def run():
        optimiser.zero_grad(set_to_none=True)
        loss = sum(model(input_ids=ids.to(device), labels=ids.to(device)).loss for ids in batches)
        loss.backward()
        optimiser.step()

    return run


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


def _child_peak(kind, shape, args, queue):
    _reset_peak_rss()
    device = resolve_device(args.device)
    model = build(shape, device)
    run = make_mask_runner(model, args, device)[0] if kind == "mask" else make_finetune_runner(model, args, device)
    run()
    run()
    queue.put(_peak_rss_mb())


def cpu_peak_mb(kind, shape, args) -> float:
    """Peak resident memory of a fresh process that builds the model and runs two steps."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_peak, args=(kind, shape, args, queue))
    proc.start()
    peak = queue.get()
    proc.join()
    return peak


def measure(shape: str, args) -> dict:
    device = resolve_device(args.device)
    peaks = {}
    if device.type != "cuda" and not args.no_memory:
        peaks = {kind: cpu_peak_mb(kind, shape, args) for kind in ("mask", "finetune")}
    model = build(shape, device)
    mask_run, cached, n_logits = make_mask_runner(model, args, device)
    finetune_model = build(shape, device)
    finetune_run = make_finetune_runner(finetune_model, args, device)
    times = {"mask": [], "finetune": []}
    for kind, run in (("mask", mask_run), ("finetune", finetune_run)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(args.warmup):
            run()
        sync(device)
        if device.type == "cuda":
            peaks[kind] = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(args.repeats):  # interleaved, so drift affects both alike
        for kind, run in (("mask", mask_run), ("finetune", finetune_run)):
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[kind].append(time.perf_counter() - start)
    del model, finetune_model
    mask_s, ft_s = statistics.median(times["mask"]), statistics.median(times["finetune"])
    return {
        "shape": shape, "device": str(device), "mask_logits": n_logits,
        "mask_step_s": mask_s, "finetune_step_s": ft_s, "time_ratio_mask_over_finetune": mask_s / ft_s,
        "mask_peak_mb": peaks.get("mask"), "finetune_peak_mb": peaks.get("finetune"),
        "memory_ratio_mask_over_finetune": (peaks["mask"] / peaks["finetune"]) if peaks else None,
        "reference_cached": cached,
        "batches": {"targetkg": args.targetkg_batch, "controlkg": args.controlkg_batch,
                    "controllm": f"{args.controllm_batch}x{args.block_size}", "kg_tokens": args.kg_length},
        "repeats": args.repeats,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="model shape(s) (default: gpt2, smollm2-135m)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--paper-batches", action="store_true", help="TargetKG 250, ControlKG 250, ControlLM 10x512")
    parser.add_argument("--targetkg-batch", type=int, default=16)
    parser.add_argument("--controlkg-batch", type=int, default=16)
    parser.add_argument("--controllm-batch", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--kg-length", type=int, default=12, help="tokens per KG sentence")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory child processes")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args(argv)
    if args.paper_batches:
        args.targetkg_batch, args.controlkg_batch, args.controllm_batch, args.block_size = 250, 250, 10, 512
    rows = [measure(shape, args) for shape in (args.shape or ["gpt2", "smollm2-135m"])]
    print("| shape | device | mask step (s) | fine-tune step (s) | time ratio | mask peak (MB) | fine-tune peak (MB) | memory ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mem = (f"{r['mask_peak_mb']:.0f} | {r['finetune_peak_mb']:.0f} | {r['memory_ratio_mask_over_finetune']:.2f}"
               if r["mask_peak_mb"] else "- | - | -")
        print(f"| {r['shape']} | {r['device']} | {r['mask_step_s']:.3f} | {r['finetune_step_s']:.3f} | "
              f"{r['time_ratio_mask_over_finetune']:.2f} | {mem} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": rows, "versions": package_versions(), "machine": platform.machine(),
                                        "threads": torch.get_num_threads(), "argv": sys.argv}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
