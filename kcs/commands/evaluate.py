"""`kcs evaluate` and `kcs evaluate-full`: perplexity, rank and log-probability metrics."""

import json
from pathlib import Path

from kcs.config import TrainConfig
from kcs.errors import KcsError


def _common(p) -> None:
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--targetkg", required=True)
    p.add_argument("--controlkg", required=True, help="the validation/test ControlKG")
    p.add_argument("--controllm", required=True, nargs="+", help="ControlLM test text file(s)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--config", help="YAML with eval_batch_size, eval_lm_batch_size, controllm_block_size, ...")
    p.add_argument("--device", default="auto")


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a mask: full vs remaining model", description=__doc__)
    _common(p)
    p.add_argument("--mask", required=True, help="mask file (learned or random)")
    p.add_argument("--full-metrics", help="reuse this `kcs evaluate-full` output instead of recomputing the full model")
    p.set_defaults(func=run_evaluate)
    p = subparsers.add_parser("evaluate-full", help="evaluate the unmasked model once (shared by all masks)",
                              description=__doc__)
    _common(p)
    p.set_defaults(func=run_full)


def run_evaluate(args) -> int:
    from kcs.atomic import write_json
    from kcs.evaluation import evaluate_mask

    config = TrainConfig.from_yaml(args.config)
    full = None
    if args.full_metrics:
        path = Path(args.full_metrics)
        if not path.is_file():
            raise KcsError(f"{path}: full-model metrics file not found (make it with `kcs evaluate-full`)")
        full = json.loads(path.read_text())
    result = evaluate_mask(args.model, args.mask, args.targetkg, args.controlkg, args.controllm, config, full, args.device)
    write_json(args.out, result)
    t = result["targetkg"]
    print(f"sparsity {result['sparsity']:.4f}  TargetKG ppl {t['ppl_full']:.2f} -> {t['ppl_remaining']:.2f}  "
          f"ControlKG ppl {result['controlkg']['ppl_full']:.2f} -> {result['controlkg']['ppl_remaining']:.2f}  "
          f"ControlLM ppl {result['controllm']['ppl_full']:.2f} -> {result['controllm']['ppl_remaining']:.2f}")
    return 0


def run_full(args) -> int:
    from kcs.atomic import write_json
    from kcs.evaluation import evaluate_full_model

    config = TrainConfig.from_yaml(args.config)
    write_json(args.out, evaluate_full_model(args.model, args.targetkg, args.controlkg, args.controllm, config, args.device))
    return 0
