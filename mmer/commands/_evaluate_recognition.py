"""``mmer evaluate recognition``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("recognition", help="(not built yet)")
