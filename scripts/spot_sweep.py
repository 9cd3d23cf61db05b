"""Sweep one spotter setting on development sessions (never on the frozen set).

Runs ``mmer bench spot --set dev --spotter NAME=VALUE`` for each value and prints ME and overall F1
per value as Markdown. A value chosen from this table was chosen on these sessions: report them as
a validation set, and confirm on the frozen set only once, at release.

Usage: python scripts/spot_sweep.py NAME V1,V2,... [--sessions 22] [--seconds 30] [--me-overlap 0.35]
"""

from __future__ import annotations

import argparse
import sys

from mmer.bench import spot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="SpotterConfig field, e.g. min_score")
    parser.add_argument("values", help="comma-separated values")
    parser.add_argument("--sessions", type=int, default=22)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--me-overlap", type=float, default=0.35)
    args = parser.parse_args(argv)
    bench_parser = argparse.ArgumentParser()
    spot.add_arguments(bench_parser)
    print(f"{args.sessions} dev sessions x {args.seconds:g} s, seeds {args.seed}..{args.seed + args.sessions - 1}, "
          f"me_overlap {args.me_overlap}")
    print()
    print(f"| {args.name} | ME F1 | ME TP / FP / FN | overall F1 | ME F1 by face, mean +- sd |")
    print("|---|---|---|---|---|")
    for value in args.values.split(","):
        r = spot.run(bench_parser.parse_args([
            "--set", "dev", "--sessions", str(args.sessions), "--seconds", str(args.seconds), "--seed", str(args.seed),
            "--me-overlap", str(args.me_overlap), "--tvl1-pairs", "0", "--spotter", f"{args.name}={value}"]))
        me, face = r["counts"]["me"], r["me_f1_by_face"]
        print(f"| {value} | {r['f1']['me']:.3f} | {me['tp']} / {me['fp']} / {me['fn']} | {r['f1']['overall']:.3f} "
              f"| {face['mean']:.3f} +- {face['sd']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
