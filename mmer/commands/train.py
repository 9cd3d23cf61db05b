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
    g.add_argument("--image-size", type=int, default=None,
                   help="side of the flow/frame/depth maps, 28-64 (default: native size for flowimages, else 32)")
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
    p.add_argument("--model", default=None,
                   help="architecture: flowcnn, hsta, hsta_tiny, ststnet, dfrnet, physionet, late_fusion "
                        "(default flowcnn for flowimages, hsta otherwise)")
    p.add_argument("--protocol", choices=("loso", "kfold"), default="loso", help="default loso")
    p.add_argument("--folds", type=int, default=5, help="folds for --protocol kfold (default 5)")
    p.add_argument("--labels", choices=("7", "4", "3", "objective"), default="3",
                   help="label protocol: 7 emotions, 4 classes, 3 classes, objective classes (default 3)")
    p.add_argument("--modalities", default="video,depth,physio", help="comma-separated subset of video,depth,physio")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs per fold (default: the model's fixed schedule, flowcnn 25, else 30)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (AdamW, one-cycle; default 2e-3, flowcnn 3e-3)")
    p.add_argument("--ema", type=float, default=None,
                   help="decay of the weight moving average that is evaluated (default 0 = off, flowcnn 0.98)")
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
    """Sample-builder config; ``None`` keeps flow images at their native size."""
    from mmer.features.sample import SampleConfig

    if args.image_size is None and args.data.startswith("flowimages:"):
        return None
    size = args.image_size or 32
    return SampleConfig(flow_method=args.flow, image_size=size, flow_size=max(64, size))


def schedule(model: str) -> dict:
    """The model's training schedule fixed in advance (``TRAINING`` in its module), else the defaults."""
    from mmer.models import flowcnn

    base = {"epochs": 30, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-2, "ema": 0.0}
    return {**base, **flowcnn.TRAINING} if model == "flowcnn" else base


def run(args: argparse.Namespace) -> int:
    from mmer.models.data import load_samples
    from mmer.models.train import TrainOptions, cross_validate

    model = args.model or ("flowcnn" if args.data.startswith("flowimages:") else "hsta")
    plan = schedule(model)
    plan.update({k: v for k in ("epochs", "batch_size", "lr", "ema") if (v := getattr(args, k)) is not None})
    opts = TrainOptions(
        model=model, protocol=args.protocol, folds=args.folds, labels=args.labels,
        modalities=parse_modalities(args.modalities), **plan,
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
        for name, d in result["per_dataset"].items():
            print(f"  {name:>10}: UF1 {d['uf1']:.3f}  UAR {d['uar']:.3f}  n={d['n_samples']}")
        print(f"selection: {result['selection']}")
        leak = result["leakage"]
        if leak["epochs_recorded"] > 1:
            print(f"leakage report (test-fold epoch selection, NOT a valid result): per-subject best epoch "
                  f"UF1 {leak['per_subject']['uf1']:.3f} ({leak['per_subject']['inflation_uf1']:+.3f}), "
                  f"best common epoch UF1 {leak['common_epoch']['uf1']:.3f} "
                  f"({leak['common_epoch']['inflation_uf1']:+.3f})")
    print_json(result)
    return 0
