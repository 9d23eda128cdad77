"""`kcs evaluate` and `kcs evaluate-full`: perplexity, rank and log-probability metrics."""


from kcs.commands import add_prefix_store_argument
from kcs.config import EvalConfig
from kcs.errors import KcsError
from kcs.labels import add_label_option, parse_labels

# The datasets of the printed summary line (controlkg_test only when --controlkg-test is given).
SUMMARY = (("targetkg", "TargetKG"), ("controlkg", "ControlKG"), ("controlkg_test", "ControlKG (test)"),
           ("controllm", "ControlLM"))


def _common(p) -> None:
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--targetkg", required=True)
    p.add_argument("--controlkg", required=True, help="the ControlKG's validation split")
    p.add_argument("--controlkg-test", default=None,
                   help="the ControlKG's held-out test split (seen by no training or tuning step): "
                        "reported as `controlkg_test`")
    p.add_argument("--controllm", required=True, nargs="+", help="ControlLM test text file(s)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--config", help="YAML of kcs.config.EvalConfig keys (eval_batch_size, eval_lm_batch_size, "
                                          "controllm_block_size)")
    p.add_argument("--device", default="auto")
    add_label_option(p)


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a mask: full vs remaining model", description=__doc__)
    _common(p)
    p.add_argument("--mask", required=True, help="mask file (learned or random)")
    p.add_argument("--full-metrics", help="reuse this `kcs evaluate-full` output instead of recomputing the full model")
    add_prefix_store_argument(p)
    p.set_defaults(func=run_evaluate)
    p = subparsers.add_parser("evaluate-full", help="evaluate the unmasked model once (shared by all masks)",
                              description=__doc__)
    _common(p)
    p.set_defaults(func=run_full)


def run_evaluate(args) -> int:
    from kcs.atomic import write_json
    from kcs.evaluation import evaluate_mask
    from kcs.maskfile import read_deviations, read_labels
    from kcs.readers import read_json

    config = EvalConfig.from_yaml(args.config)
    full = None
    if args.full_metrics:
        path = args.full_metrics
        full = read_json(path, "`kcs evaluate-full` metrics file", made_by="kcs evaluate-full")
        if full.get("kind") != "full" or "raw" not in full:
            raise KcsError(f"{path}: not a `kcs evaluate-full` metrics file (no kind 'full' with raw metrics); "
                           "make it with `kcs evaluate-full`")
    result = evaluate_mask(args.model, args.mask, args.targetkg, args.controlkg, args.controllm, config, full, args.device,
                           controlkg_test=args.controlkg_test, prefix_store=args.prefix_store)
    # the mask's labels (which run it is), with any given here on top, and how its training left the paper's
    result = {"labels": read_labels(args.mask) | parse_labels(args.label), "deviations": read_deviations(args.mask),
              **result}
    write_json(args.out, result, finite=True)
    print(f"sparsity {result['sparsity']:.4f}  " + "  ".join(
        f"{label} ppl {result[key]['ppl_full']:.2f} -> {result[key]['ppl_remaining']:.2f}"
        for key, label in SUMMARY if key in result))
    return 0


def run_full(args) -> int:
    from kcs.atomic import write_json
    from kcs.evaluation import evaluate_full_model

    config = EvalConfig.from_yaml(args.config)
    result = evaluate_full_model(args.model, args.targetkg, args.controlkg, args.controllm, config, args.device,
                                 controlkg_test=args.controlkg_test)
    result = {"labels": parse_labels(args.label), **result}
    write_json(args.out, result, finite=True)
    print("full model: " + "  ".join(f"{label} ppl {result['raw'][key]['ppl']:.2f}"
                                     for key, label in SUMMARY if key in result["raw"]))
    return 0
