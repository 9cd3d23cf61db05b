"""``mmer evaluate {spotting,recognition}``: score predictions under the field's protocols."""

from __future__ import annotations

import argparse

from mmer.commands import _evaluate_recognition, _evaluate_spotting


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score spotting or recognition results")
    kinds = parser.add_subparsers(dest="evaluate", metavar="KIND", required=True)
    _evaluate_spotting.register(kinds)
    _evaluate_recognition.register(kinds)
