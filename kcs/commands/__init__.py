"""Subcommands of the `kcs` CLI: one module each, discovered by kcs.cli (each defines `register`)."""


def add_prefix_store_argument(parser) -> None:
    """`--prefix-store DIR`, shared by the commands that run a frozen prefix (kcs.prefix.PrefixStore)."""
    parser.add_argument("--prefix-store", metavar="DIR",
                        help="a folder shared with the other jobs of this model: the frozen prefix's hidden "
                             "states are read from it when another job computed them (same numbers)")


def settings_option(parser) -> None:
    """`--config FILE` for a command whose settings are its options: a YAML mapping of option names
    (with '_' for '-'), as the pipeline's settings files hold them (kcs.pipeline.settings). The file's
    values stand where --config stands: options given after it win."""
    parser.add_argument("--config", dest="settings_file", metavar="FILE",
                        help="YAML mapping of this command's options (keys: option names with _ for -)")
    parser.set_defaults(settings_parser=parser)
