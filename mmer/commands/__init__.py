"""Subcommands of ``mmer``: one module each, exposing ``register(subparsers)``.

``register`` adds a parser and sets ``func`` (``args -> int``) as its default.
"""
