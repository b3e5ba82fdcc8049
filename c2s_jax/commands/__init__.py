"""Subcommands of `c2s`: one module each, exposing `register(subparsers)`."""
