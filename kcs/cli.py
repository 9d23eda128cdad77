"""The `kcs` command. Each subcommand lives in `kcs/commands/<name>.py` and exposes
`register(subparsers)`; this module only discovers them and turns KcsError into a clean exit."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import kcs
import kcs.commands
from kcs.errors import KcsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcs", description="Knowledge-critical subnetworks in causal language models."
    )
    parser.add_argument("--version", action="version", version=f"kcs {kcs.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in sorted(pkgutil.iter_modules(kcs.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"kcs.commands.{module.name}").register(subparsers)
    return parser


def _settings_tokens(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The settings file as command-line tokens, each key and value checked against the command."""
    from kcs.readers import read_yaml_mapping

    options = {option: action for option, action in parser._option_string_actions.items()
               if option.startswith("--") and option not in ("--config", "--help")}
    tokens = []
    for key, value in read_yaml_mapping(path).items():
        option = "--" + str(key).replace("_", "-")
        action = options.get(option)
        if action is None:
            known = ", ".join(sorted(o[2:].replace("-", "_") for o in options))
            raise KcsError(f"{path}: unknown key '{key}'; known keys: {known}")
        if value is None:
            continue
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise KcsError(f"{path}: key '{key}' must be true or false, got {value!r}")
            tokens += [option] if value else []
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                converted = action.type(str(item)) if action.type else str(item)
            except (TypeError, ValueError):
                raise KcsError(f"{path}: key '{key}' has a value {item!r} that is not a valid {option} value") from None
            if action.choices is not None and converted not in action.choices:
                raise KcsError(f"{path}: key '{key}' must be one of {', '.join(map(str, action.choices))}, got {item!r}")
        tokens += [option, *(str(item) for item in (value if isinstance(value, list) else [value]))]
    return tokens


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the command named by the leading words of argv (e.g. `data sample-wordnet`)."""
    for token in argv:
        if token.startswith("-"):
            continue
        subcommands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subcommands is None or token not in subcommands.choices:
            break
        parser = subcommands.choices[token]
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line, with a settings file (--config of a settings_option command) expanded
    where it stands, before parsing, so that the file may give required options too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = _command_parser(parser, argv)
    if command.get_default("settings_parser") is not None:
        for at, token in enumerate(argv):
            if token == "--config" and at + 1 < len(argv):
                argv = argv[:at] + _settings_tokens(argv[at + 1], command) + argv[at + 2:]
                break
            if token.startswith("--config="):
                argv = argv[:at] + _settings_tokens(token.split("=", 1)[1], command) + argv[at + 1:]
                break
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except KcsError as err:
        print(f"kcs: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KcsError as err:
        print(f"kcs {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, a vanished file: the system's words, one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"kcs {args.command}: error: {where}{err.strerror or err}; nothing partial was kept "
              "(outputs are written beside and renamed into place)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
