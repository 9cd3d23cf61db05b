"""Spotting F1 on development sessions at several ME-overlap shares, grouped by face.

Runs ``mmer bench spot --set dev`` once per ``--me-overlap`` value (one session per development
identity by default) and prints a Markdown table: pooled F1 and the spread of ME F1 over faces.
These sessions steer development: they are a validation set, not a held-out one.

Usage: python scripts/spot_devsets.py [--overlaps 0,0.35,0.5] [--sessions 22] [--seconds 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmer.bench import spot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlaps", default="0,0.35,0.5", help="comma-separated --me-overlap values")
    parser.add_argument("--sessions", type=int, default=22)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spotter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args(argv)
    bench_parser = argparse.ArgumentParser()
    spot.add_arguments(bench_parser)
    results = {}
    for share in (float(x) for x in args.overlaps.split(",")):
        cli = ["--set", "dev", "--sessions", str(args.sessions), "--seconds", str(args.seconds),
               "--seed", str(args.seed), "--me-overlap", str(share), "--tvl1-pairs", "0"]
        for item in args.spotter:
            cli += ["--spotter", item]
        results[share] = spot.run(bench_parser.parse_args(cli))
    if args.out:
        args.out.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1) + "\n")
    print(f"{args.sessions} dev sessions x {args.seconds:g} s, seeds {args.seed}..{args.seed + args.sessions - 1}"
          + (f", spotter {args.spotter}" if args.spotter else ""))
    print()
    print("| me_overlap | ME F1 | ME TP / FP / FN | MaE F1 | overall F1 | ME F1 by face, mean +- sd (min) | load |")
    print("|---|---|---|---|---|---|---|")
    for share, r in results.items():
        me, face = r["counts"]["me"], r["me_f1_by_face"]
        print(f"| {share:g} | {r['f1']['me']:.3f} | {me['tp']} / {me['fp']} / {me['fn']} | {r['f1']['mae']:.3f} "
              f"| {r['f1']['overall']:.3f} | {face['mean']:.3f} +- {face['sd']:.3f} ({face['min']:.2f}) "
              f"| {r['load_average'][0]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
