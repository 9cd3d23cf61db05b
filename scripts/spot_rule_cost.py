"""What each rejection rule of the spotter costs and earns, on development sessions.

Runs ``mmer bench spot --set dev --rule-cost`` (every session once with all rules, once with each rule
off) with half the MEs placed during a distractor, and prints the rule-cost table as Markdown.
The sessions are development sessions (seeds below the frozen set's), so deciding on a rule with
this table is development, not a look at the frozen set.

Usage: python scripts/spot_rule_cost.py [--sessions 12] [--seconds 30] [--me-overlap 0.5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmer.bench import spot


def table(result: dict) -> str:
    """The rule-cost table of a ``bench spot --rule-cost`` result, as Markdown."""
    rows = ["| rule | distractor | MEs meeting it | ME recall on them, rule on / off | TPs lost (ME, MaE) "
            "| FPs removed (ME, MaE) | overall F1 on / off | earns more than it costs |",
            "|---|---|---|---|---|---|---|---|"]
    for rule, r in result["rule_cost"].items():
        recall = ("-" if r["me_recall_on"] is None
                  else f"{r['me_recall_on']:.2f} / {r['me_recall_off']:.2f}")
        rows.append(f"| {rule} | {', '.join(r['distractor'])} | {r['mes_meeting_it']} | {recall} "
                    f"| {r['tp_lost']['me']}, {r['tp_lost']['mae']} | {r['fp_removed']['me']}, {r['fp_removed']['mae']} "
                    f"| {r['overall_f1']['on']:.3f} / {r['overall_f1']['off']:.3f} "
                    f"| {'yes' if r['earns_more_than_it_costs'] else 'no'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--me-overlap", type=float, default=0.5)
    parser.add_argument("--out", type=Path, help="also write the whole JSON result here")
    args = parser.parse_args(argv)
    bench_parser = argparse.ArgumentParser()
    spot.add_arguments(bench_parser)
    result = spot.run(bench_parser.parse_args([
        "--set", "dev", "--rule-cost", "--sessions", str(args.sessions), "--seconds", str(args.seconds),
        "--seed", str(args.seed), "--me-overlap", str(args.me_overlap), "--tvl1-pairs", "0"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.sessions} dev sessions x {args.seconds:g} s, seeds {args.seed}..{args.seed + args.sessions - 1}, "
          f"me_overlap {args.me_overlap}; all rules on: ME F1 {result['f1']['me']:.3f}, "
          f"overall F1 {result['f1']['overall']:.3f}; load average {result['load_average']}")
    print()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
