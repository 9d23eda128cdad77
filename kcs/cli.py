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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
