"""Where a mask step's elementwise time goes, over every masked matrix of a randomly initialised
model of a real shape (no download): per mask sample, the uniform draws (kcs.noise), the forward
(threshold, weight x 0/1) and the straight-through backward; per step, the keep probabilities
(kcs.mask_sample's p and q, once per step) and the sparsity regulariser.

A training step draws one sample per loss term (three with ControlLM), so `step_s` (probabilities,
three samples forward and backward, the regulariser) is the part of `benchmarks/mask_step.py`'s mask
step that grows with the number of masked weights rather than with the tokens. It is timed twice
in one run: with kcs.mask_sample's fused CPU kernels (what training runs) and with its torch
executor (the same arithmetic as separate torch operations), and their ratio is reported.

    python benchmarks/mask_sample.py --shape smollm2-135m --repeats 3 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.autograd.graph import increment_version

from kcs import mask_sample
from kcs.atomic import write_json
from kcs.masking import WeightMask
from kcs.models import num_blocks, select_blocks
from kcs.provenance import provenance
from kcs.shapes import known_config


def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-touch page faults and thread start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(shape: str, repeats: int, samples_per_step: int = 3) -> dict:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(known_config(shape))
    blocks = select_blocks(num_blocks(model))  # the paper's top half
    mask = WeightMask.for_model(model, blocks)
    named = dict(model.named_parameters())
    weights = [named[name].detach() for name in mask.names]
    upstream = [torch.ones_like(weight) for weight in weights]  # dL/d(masked weight), made once: not timed
    for logits in mask.logits:
        logits.grad = torch.zeros_like(logits)  # training zeroes, never frees, the gradients

    def new_step():  # what an optimiser step does to the mask's per-step caches
        increment_version(list(mask.logits))

    def probabilities():
        new_step()
        mask.keep_probabilities()

    def noise():
        new_step()
        mask.uniform_draws(True)

    def forward():  # as kcs.masking.MaskedLM.effective_weights draws a sample
        probabilities()
        draws, buffers = mask.uniform_draws(True), mask.sample_buffers()
        with torch.no_grad():
            for i, weight in enumerate(weights):
                mask.masked_weight(i, weight, "remaining", True, draws[i], buffers[i])

    def sample():
        draws, buffers = mask.uniform_draws(True), mask.sample_buffers()
        outputs = [mask.masked_weight(i, weight, "remaining", True, draws[i], buffers[i])
                   for i, weight in enumerate(weights)]
        torch.autograd.backward(outputs, upstream)

    def forward_backward():
        probabilities()
        sample()

    def step():
        probabilities()
        for _ in range(samples_per_step):
            sample()
        mask.expected_density().backward()

    result = {"shape": shape, "masked_weights": mask.num_logits, "blocks": blocks, "samples_per_step": samples_per_step,
              "probabilities_s": _seconds(probabilities, repeats), "noise_s": _seconds(noise, repeats),
              "forward_s": _seconds(forward, repeats), "forward_backward_s": _seconds(forward_backward, repeats),
              "step_s": _seconds(step, repeats)}
    with torch_executor():
        result["step_s_torch_executor"] = _seconds(step, repeats)
    result["fused_over_torch_executor"] = result["step_s"] / result["step_s_torch_executor"]
    return result


@contextlib.contextmanager
def torch_executor():
    """kcs.mask_sample's torch executor everywhere (the fused kernels switched off)."""
    original = mask_sample.fused_applies
    mask_sample.fused_applies = lambda weight, p: False
    try:
        yield
    finally:
        mask_sample.fused_applies = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="smollm2-135m", help="a kcs.shapes.KNOWN_SHAPES name")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the result as JSON")
    args = parser.parse_args()
    result = measure(args.shape, args.repeats)
    print(f"{result['shape']}: {result['masked_weights'] / 1e6:.1f}M masked weights; per step: probabilities "
          f"{result['probabilities_s']:.3f} s; per sample: noise {result['noise_s']:.3f} s, forward incl. noise and "
          f"probabilities {result['forward_s']:.3f} s, forward+backward {result['forward_backward_s']:.3f} s; a step "
          f"(probabilities, {result['samples_per_step']} samples, regulariser): {result['step_s']:.3f} s fused, "
          f"{result['step_s_torch_executor']:.3f} s torch executor (ratio {result['fused_over_torch_executor']:.2f})")
    if args.out:
        write_json(args.out, {**result, "provenance": provenance(command="benchmarks/mask_sample.py")})


if __name__ == "__main__":
    main()
