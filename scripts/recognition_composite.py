"""Strict LOSO on the real composite (CASME II + SAMM + SMIC) over several training seeds.

Each seed is one ``cross_validate`` run with the model's fixed schedule (the test subject never
selects anything), kept in ``OUT/<model>[-<opts>]/seed<S>/`` and reused when already there, so an
interrupted run resumes. Prints one JSON line per seed, then the summary (mean +- sd over seeds of
UF1/UAR, per source dataset, the leakage report, the seed ensemble), also written to
``OUT/<model>[-<opts>]/summary.json``. ``mmer bench recognition --composite DIR`` runs the same code.

Usage::

    nice -n 10 python scripts/recognition_composite.py --data ../shared/data/composite-causalnet \\
        --model flowcnn --seeds 0 1 2 3 4 --workers 2 --out runs/composite
    # the shipped checkpoint's configuration (onset->apex flow only):
    ... --model flowcnn --model-opt offset=false
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from mmer.bench.recognition import composite_runs, summarise_composite
    from mmer.commands.train import parse_model_opts
    from mmer.replay import open_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="composite folder (flowimages layout)")
    p.add_argument("--model", default="flowcnn")
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/composite")
    args = p.parse_args()
    ds = open_dataset("flowimages", args.data)
    dataset_of = {s.sample: s.extra.get("dataset", "all") for s in ds.samples}
    runs = composite_runs(args.data, args.model, args.seeds, workers=args.workers, out=Path(args.out),
                          model_cfg=parse_model_opts(args.model_opt), log=lambda d: print(json.dumps(d), flush=True))
    summary = summarise_composite(runs, dataset_of)
    (runs[0][1].parent / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
