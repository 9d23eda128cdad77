"""Where a mask step's elementwise time goes: per mask sample, the uniform draws (kcs.noise), the
forward (logistic noise, threshold, weight x 0/1) and the straight-through backward, over every
masked matrix of a randomly initialised model of a real shape (no download).

A training step draws one sample per loss term (three with ControlLM), so three times the
forward+backward figure is the part of `benchmarks/mask_step.py`'s mask step that grows with the
number of masked weights rather than with the tokens.

    python benchmarks/mask_sample.py --shape smollm2-135m --repeats 3 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

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

    def noise():
        mask.uniform_draws(True)

    def forward():
        draws = mask.uniform_draws(True)
        with torch.no_grad():
            for i, weight in enumerate(weights):
                mask.masked_weight(i, weight, "remaining", True, draws[i])

    def forward_backward():
        draws = mask.uniform_draws(True)
        outputs = [mask.masked_weight(i, weight, "remaining", True, draws[i]) for i, weight in enumerate(weights)]
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
        for logits in mask.logits:
            logits.grad = None

    result = {"shape": shape, "masked_weights": mask.num_logits, "blocks": blocks,
              "noise_s": _seconds(noise, repeats), "forward_s": _seconds(forward, repeats),
              "forward_backward_s": _seconds(forward_backward, repeats), "samples_per_step": samples_per_step}
    result["per_step_s"] = samples_per_step * result["forward_backward_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="smollm2-135m", help="a kcs.shapes.KNOWN_SHAPES name")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the result as JSON")
    args = parser.parse_args()
    result = measure(args.shape, args.repeats)
    print(f"{result['shape']}: {result['masked_weights'] / 1e6:.1f}M masked weights; per sample: noise "
          f"{result['noise_s']:.3f} s, forward incl. noise {result['forward_s']:.3f} s, forward+backward "
          f"{result['forward_backward_s']:.3f} s; x{result['samples_per_step']} per step: {result['per_step_s']:.2f} s")
    if args.out:
        write_json(args.out, {**result, "provenance": provenance(command="benchmarks/mask_sample.py")})


if __name__ == "__main__":
    main()
