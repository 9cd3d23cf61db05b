"""``mmer predict``: run a trained checkpoint on new samples and write a predictions CSV."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from mmer.commands._output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify the samples of a dataset with a trained checkpoint",
        description="Classify every sample of KIND:PATH with a checkpoint written by `mmer train --out`. "
        "The CSV (subject,sample,label,pred,prob_<class>...) is the input of `mmer evaluate recognition`; "
        "label is empty where the dataset has none in the checkpoint's protocol.",
    )
    p.add_argument("checkpoint", help="model.pt from mmer train")
    p.add_argument("--data", required=True, metavar="KIND:PATH")
    p.add_argument("--modalities", help="subset of the checkpoint's modalities to feed (default: all of them)")
    p.add_argument("--out", help="predictions CSV (default: print a summary only)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--no-cache", action="store_true", help="recompute features instead of reading the cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mmer.commands.train import parse_modalities
    from mmer.features.sample import SampleConfig
    from mmer.models import load_checkpoint
    from mmer.models.data import load_samples
    from mmer.models.train import predict_proba
    from mmer.replay.labels import LabelError, get_protocol

    mods = parse_modalities(args.modalities) if args.modalities else None
    model, meta = load_checkpoint(args.checkpoint, modalities=list(mods) if mods else None)
    mods = mods or tuple(meta["modalities"])
    cfg = SampleConfig(**meta["features"]) if meta.get("features") else SampleConfig()
    ss = load_samples(args.data, config=cfg, cache=not args.no_cache)
    if ss.config.model_inputs() != cfg.model_inputs():
        raise ValueError(f"{args.data}: samples have shapes {ss.config.model_inputs()}, the checkpoint expects "
                         f"{cfg.model_inputs()}")
    classes = list(meta["class_names"])
    proto = get_protocol(meta["labels"])
    proba = predict_proba(model, ss.arrays, np.arange(len(ss)), mods)
    pred = proba.argmax(1)
    labels = []
    for raw in ss.labels:
        entry = json.loads(raw) if raw.startswith("{") else {"emotion": raw, "objective": None}
        value = entry["objective"] if proto.name == "objective" else entry["emotion"]
        try:
            labels.append(proto.map(str(value)) if value is not None else None)
        except LabelError:
            labels.append(None)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", "sample", "label", "pred", *[f"prob_{c}" for c in classes]])
            for i in range(len(ss)):
                w.writerow([ss.subjects[i], ss.ids[i], labels[i] or "", classes[pred[i]],
                            *[f"{p:.5f}" for p in proba[i]]])
    counts = {c: int((pred == k).sum()) for k, c in enumerate(classes)}
    result = {"n_samples": len(ss), "model": meta["config"]["name"], "modalities": list(mods),
              "classes": classes, "predicted_counts": counts, "out": args.out,
              "n_labelled": sum(lab is not None for lab in labels)}
    if not args.json:
        print(f"{len(ss)} samples -> {counts}" + (f"; written to {args.out}" if args.out else ""))
    print_json(result)
    return 0
