"""`kcs remove`: write the remaining model (subnetwork zeroed) as a Hugging Face folder."""


def register(subparsers) -> None:
    p = subparsers.add_parser("remove", help="zero a subnetwork and save the remaining model", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from kcs.maskfile import load_mask
    from kcs.models import load_model
    from kcs.provenance import provenance
    from kcs.removal import save_remaining, zero_subnetwork_

    model, tokenizer = load_model(args.model, device="cpu")
    mask = load_mask(args.mask, model=model)
    zeroed = zero_subnetwork_(model, mask)
    removed = sum(int(z.sum()) for z in zeroed.values())
    save_remaining(model, tokenizer, args.out, provenance(model=args.model, mask=str(args.mask), removed_weights=removed,
                                                          sparsity=mask.sparsity()))
    print(f"{args.out}: removed {removed} weights (sparsity {mask.sparsity():.5f})")
    return 0
