"""Mask operations: `kcs random-mask`, `kcs combine-masks`, `kcs overlap`, `kcs sparsity`."""

import itertools


def register(subparsers) -> None:
    p = subparsers.add_parser("random-mask", help="a random subnetwork with the same per-matrix size as a mask")
    p.add_argument("--like", required=True, help="mask file to match")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--draw", type=int, default=1,
                   help="which random subnetwork of this seed (1, 2, ...: several draws give the baseline a spread)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_random)

    p = subparsers.add_parser("combine-masks", help="union / intersection / majority of several masks")
    p.add_argument("masks", nargs="+")
    p.add_argument("--how", required=True, choices=["union", "intersection", "majority"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_combine)

    p = subparsers.add_parser("overlap", help="pairwise Jaccard overlap of subnetworks")
    p.add_argument("masks", nargs="+")
    p.add_argument("--out", required=True, help="JSON with the pairwise overlaps")
    p.set_defaults(func=run_overlap)

    p = subparsers.add_parser("sparsity", help="sparsity of a mask: global, per layer, per module type")
    p.add_argument("mask")
    p.add_argument("--out", help="JSON file (default: print)")
    p.set_defaults(func=run_sparsity)


def _meta(mask) -> dict:
    return {"base_model": mask.metadata["base_model"], "model_type": mask.metadata["model_type"]}


def run_random(args) -> int:
    from kcs.random_baseline import save_random_like

    randomised = save_random_like(args.like, args.seed, args.draw, args.out)
    print(f"{args.out}: sparsity {randomised.sparsity():.5f}, matrix by matrix as {args.like}")
    return 0


def run_combine(args) -> int:
    from kcs.grid import LEARNED
    from kcs.labels import common_labels
    from kcs.mask_algebra import combine
    from kcs.maskfile import load_mask, read_deviations, read_labels, save_mask
    from kcs.provenance import provenance

    masks = [load_mask(path) for path in args.masks]
    combined = combine(masks, args.how)
    # what the masks share (model, TargetKG; not their seeds), as one learned subnetwork
    labels = common_labels([read_labels(path) for path in args.masks]) | {"combination": args.how, "method": LEARNED}
    # the deviations every source was trained with (all of them, when the masks differ only in their seeds)
    deviations = common_labels([read_deviations(path) for path in args.masks])
    save_mask(args.out, combined, **_meta(masks[0]), labels=labels, deviations=deviations, binary=True,
              kind=f"combined-{args.how}",
              provenance=provenance(model=masks[0].metadata["base_model"], sources=args.masks, how=args.how))
    print(f"{args.out}: sparsity {combined.sparsity():.5f}")
    return 0


def run_overlap(args) -> int:
    from kcs.atomic import write_json
    from kcs.mask_algebra import jaccard
    from kcs.maskfile import load_mask, read_labels
    from kcs.provenance import provenance

    masks = {path: load_mask(path) for path in args.masks}
    pairs = [{"a": a, "b": b, "jaccard": jaccard(masks[a], masks[b])} for a, b in itertools.combinations(args.masks, 2)]
    write_json(args.out, {"pairs": pairs, "labels": {path: read_labels(path) for path in args.masks},
                          "sparsity": {p: m.sparsity() for p, m in masks.items()},
                          "provenance": provenance(sources=args.masks)})
    return 0


def run_sparsity(args) -> int:
    import json

    from kcs.atomic import write_json
    from kcs.maskfile import load_mask

    report = load_mask(args.mask).sparsity_report()
    if args.out:
        write_json(args.out, report)
    else:
        print(json.dumps(report, indent=2))
    return 0
