"""``mmer train``: subject-independent training and evaluation of a recognition model."""

from __future__ import annotations

import argparse
import json
import logging
import os

from mmer.commands._output import print_json

logger = logging.getLogger(__name__)


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """Sample-builder options shared by ``train`` and ``predict``."""
    g = parser.add_argument_group("features (recordings only; cached per setting)")
    g.add_argument("--flow", choices=("tvl1", "dis", "farneback"), default="tvl1",
                   help="onset->apex optical flow (default: tvl1)")
    g.add_argument("--image-size", type=int, default=32, help="side of the flow/frame/depth maps, 28-64 (default 32)")
    g.add_argument("--no-cache", action="store_true", help="recompute features instead of reading the cache")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train and evaluate a recognition model under LOSO or subject k-fold",
        description="Train a recognition model under a strict subject-independent protocol and score the pooled "
        "predictions (UF1, UAR, accuracy). KIND is casme3, synth (a CAS(ME)^3-layout synthetic set), "
        "flowimages (labels.csv + flow/*.png) or samples (a cached .npz sample set).",
    )
    p.add_argument("--data", required=True, metavar="KIND:PATH", help="dataset, e.g. synth:/tmp/set or flowimages:DIR")
    p.add_argument("--model", default="hsta",
                   help="architecture: hsta, hsta_tiny, ststnet, dfrnet, physionet, late_fusion (default hsta)")
    p.add_argument("--protocol", choices=("loso", "kfold"), default="loso", help="default loso")
    p.add_argument("--folds", type=int, default=5, help="folds for --protocol kfold (default 5)")
    p.add_argument("--labels", choices=("7", "4", "3", "objective"), default="3",
                   help="label protocol: 7 emotions, 4 classes, 3 classes, objective classes (default 3)")
    p.add_argument("--modalities", default="video,depth,physio", help="comma-separated subset of video,depth,physio")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per fold (default 30)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, one-cycle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--selection", choices=("fixed", "val"), default="fixed",
                   help="fixed epochs, or best epoch on a validation split of the training subjects")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of training subjects for --selection val")
    p.add_argument("--workers", type=int, default=0,
                   help="folds trained in parallel processes, one torch thread each (default 0: one per core, at most 4)")
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. dim=32 (repeatable; VALUE is JSON or text)")
    p.add_argument("--out", help="folder for results.json, predictions.csv, confusion.png and model.pt")
    p.add_argument("--no-checkpoint", action="store_true", help="do not train the final all-subject model")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    add_feature_arguments(p)
    p.set_defaults(func=run)


def parse_modalities(text: str) -> tuple[str, ...]:
    from mmer.models import MODALITIES

    mods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise ValueError(f"--modalities must be a comma-separated subset of {','.join(MODALITIES)}, got {text!r}")
    return mods


def parse_model_opts(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-opt must be KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def feature_config(args: argparse.Namespace):
    from mmer.features.sample import SampleConfig

    return SampleConfig(flow_method=args.flow, image_size=args.image_size, flow_size=max(64, args.image_size))


def run(args: argparse.Namespace) -> int:
    from mmer.models.data import load_samples
    from mmer.models.train import TrainOptions, cross_validate

    opts = TrainOptions(
        model=args.model, protocol=args.protocol, folds=args.folds, labels=args.labels,
        modalities=parse_modalities(args.modalities), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, selection=args.selection, val_fraction=args.val_fraction,
        workers=args.workers if args.workers > 0 else max(1, min(os.cpu_count() or 1, 4)),
        model_cfg=parse_model_opts(args.model_opt),
    )
    ss = load_samples(args.data, config=feature_config(args), cache=not args.no_cache)
    result = cross_validate(ss, opts, out_dir=args.out, save_final=not args.no_checkpoint, progress=True)
    if not args.json:
        print(f"{result['model']} [{','.join(result['modalities'])}] {result['protocol']} "
              f"{result['labels']}: UF1 {result['uf1']:.3f}  UAR {result['uar']:.3f}  "
              f"acc {result['accuracy']:.3f}  ({result['n_samples']} samples, {result['n_folds']} folds, "
              f"{result['wall_s']:.1f} s)")
        for name, c in result["per_class"].items():
            print(f"  {name:>10}: F1 {c['f1']:.3f}  recall {c['recall']:.3f}  n={c['support']}")
        print(f"selection: {result['selection']}")
    print_json(result)
    return 0
