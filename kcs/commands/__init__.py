"""Subcommands of the `kcs` CLI: one module each, discovered by kcs.cli (each defines `register`)."""
