"""`kcs config`: the settings of mask training, evaluation and finetuning, with their defaults (the
paper's values) and one comment each, as YAML a configuration file can copy from."""


from kcs.config import SECTIONS


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="print every setting with its default and comment", description=__doc__)
    p.add_argument("section", nargs="?", choices=tuple(SECTIONS),
                   help="one section (default: all three)")
    p.set_defaults(func=run)


def run(args) -> int:
    from kcs.config import defaults_yaml

    print("\n".join(defaults_yaml(section) for section in ([args.section] if args.section else SECTIONS)), end="")
    return 0
