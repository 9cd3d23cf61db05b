"""``mmer evaluate spotting``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("spotting", help="(not built yet)")
