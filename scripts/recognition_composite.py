"""Strict LOSO on the real composite (CASME II + SAMM + SMIC) over several training seeds.

Each seed is one ``cross_validate`` run (fixed schedule, the test subject never selects anything),
written to ``OUT/<model>/seed<S>/results.json`` and skipped when already there, so an interrupted
run resumes. The summary (``OUT/<model>/summary.json``, also printed) holds mean +- sd over seeds
of UF1/UAR, per source dataset, the leakage report, and the seed ensemble (probabilities averaged
over the seeds' runs).

Usage::

    nice -n 10 python scripts/recognition_composite.py --data ../shared/data/composite-causalnet \\
        --model flowcnn --seeds 0 1 2 3 4 --workers 2 --out runs/composite
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def run_seed(data: str, model: str, seed: int, workers: int, out: Path, epochs: int | None) -> dict:
    from mmer.models.data import load_samples
    from mmer.models.train import TrainOptions, cross_validate

    done = out / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    training = _training(model)
    if epochs is not None:
        training["epochs"] = epochs
    ss = load_samples(f"flowimages:{data}")
    opts = TrainOptions(model=model, labels="3", modalities=("video",), seed=seed, workers=workers, **training)
    return cross_validate(ss, opts, out_dir=out, save_final=False, progress=False)


def _training(model: str) -> dict:
    from mmer.models import flowcnn

    return dict(flowcnn.TRAINING) if model == "flowcnn" else {"epochs": 30}


def _probabilities(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    classes = [k[len("prob_"):] for k in rows[0] if k.startswith("prob_")]
    ids = [r["sample"] for r in rows]
    proba = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
    return ids, [r["label"] for r in rows], proba


def summarise(results: list[dict], dirs: list[Path], dataset_of: dict[str, str]) -> dict:
    """Mean +- sd over seeds, per dataset, leakage, and the seed ensemble."""
    from mmer.models.metrics import recognition_scores

    def stat(values) -> dict:
        v = np.asarray(values, dtype=float)
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                "values": v.round(4).tolist()}

    out = {"model": results[0]["model"], "seeds": len(results), "selection": results[0]["selection"],
           "options": {k: results[0]["options"][k] for k in ("epochs", "batch_size", "lr", "weight_decay", "ema")},
           "uf1": stat([r["uf1"] for r in results]), "uar": stat([r["uar"] for r in results]),
           "wall_s": stat([r["wall_s"] for r in results])}
    out["per_dataset"] = {name: {"uf1": stat([r["per_dataset"][name]["uf1"] for r in results]),
                                 "uar": stat([r["per_dataset"][name]["uar"] for r in results]),
                                 "n_samples": results[0]["per_dataset"][name]["n_samples"]}
                          for name in results[0]["per_dataset"]}
    out["leakage"] = {
        "common_epoch_uf1": stat([r["leakage"]["common_epoch"]["uf1"] for r in results]),
        "per_subject_uf1": stat([r["leakage"]["per_subject"]["uf1"] for r in results]),
        "per_subject_uar": stat([r["leakage"]["per_subject"]["uar"] for r in results]),
        "per_subject_inflation_uf1": stat([r["leakage"]["per_subject"]["inflation_uf1"] for r in results]),
    }
    ids, labels, proba = _probabilities(dirs[0] / "predictions.csv")
    for d in dirs[1:]:
        more_ids, _, more = _probabilities(d / "predictions.csv")
        order = {s: i for i, s in enumerate(more_ids)}
        proba = proba + more[[order[s] for s in ids]]
    classes = results[0]["classes"]
    truth = np.array([classes.index(lab) for lab in labels])
    pred = proba.argmax(1)
    ens = recognition_scores(truth, pred, class_names=classes)
    out["seed_ensemble"] = {"uf1": ens["uf1"], "uar": ens["uar"], "per_dataset": {}}
    names = np.array([dataset_of[s] for s in ids])
    for name in dict.fromkeys(names.tolist()):
        sc = recognition_scores(truth[names == name], pred[names == name], class_names=classes)
        out["seed_ensemble"]["per_dataset"][name] = {"uf1": sc["uf1"], "uar": sc["uar"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="composite folder (flowimages layout)")
    p.add_argument("--model", default="flowcnn")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, help="override the model's fixed schedule")
    p.add_argument("--out", default="runs/composite")
    args = p.parse_args()
    from mmer.replay import open_dataset

    ds = open_dataset("flowimages", args.data)
    dataset_of = {s.sample: s.extra.get("dataset", "all") for s in ds.samples}
    base = Path(args.out) / args.model
    results, dirs = [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        d = base / f"seed{seed}"
        results.append(run_seed(args.data, args.model, seed, args.workers, d, args.epochs))
        dirs.append(d)
        print(json.dumps({"seed": seed, "uf1": results[-1]["uf1"], "uar": results[-1]["uar"],
                          "s": round(time.perf_counter() - t0, 1)}), flush=True)
    summary = summarise(results, dirs, dataset_of)
    (base / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
