"""Subcommands of the `kcs` CLI: one module each, discovered by kcs.cli (each defines `register`)."""


def add_prefix_store_argument(parser) -> None:
    """`--prefix-store DIR`, shared by the commands that run a frozen prefix (kcs.prefix.PrefixStore)."""
    parser.add_argument("--prefix-store", metavar="DIR",
                        help="a folder shared with the other jobs of this model: the frozen prefix's hidden "
                             "states are read from it when another job computed them (same numbers)")
