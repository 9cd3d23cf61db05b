"""``mmer bench recognition``: accuracy, speed and size of the recognition models on held-out data.

Four parts, all on synthetic data drawn from the *held-out* face ``45-m7-di-ph.jpg`` and
``skimage.data.astronaut()`` with seeds >= 1000 (development used other faces and seeds):

1. **flowimages**: synthetic micro-expressions written in the precomputed-flow layout
   (``labels.csv`` + ``flow/*.png``), read back through ``flowimages:`` and scored by full LOSO
   (one synthetic session = one subject), timing the whole LOSO run;
2. **multimodal**: fused (video + depth + physiology) against video-only training under
   subject-disjoint k-fold, and the fused models scored with each modality missing at test time;
3. **inference**: ms per candidate on one CPU core with the packaged demo checkpoint, features
   included (face mesh on the onset frame, alignment, DIS flow, depth, neurokit2 physiology) but
   not TV-L1, for the early video+depth decision and the late fused one;
4. **size**: parameters and FLOPs per model (``torch.utils.flop_counter``), one sample;
5. **composite** (only with ``--composite DIR``): strict LOSO on the real 3-class composite
   (CASME II + SAMM + SMIC, flowimages layout) over several training seeds: mean +- sd of UF1/UAR,
   per source dataset, the leakage report beside it, the seed ensemble, and the ms per candidate of
   the packaged composite checkpoint on one core (mmer's TV-L1 flow on a real clip plus the model).
   Each seed's run is kept under ``--composite-out`` and reused, so a long run resumes;
6. **dose** (fusion dose-response): synthetic sets at physiology couplings ``--couplings``
   (0 = physiology holds no emotion information), 4 classes, folds grouped by face. At each
   coupling: the video model alone, gradient boosting on the physiology features alone, and their
   late fusion (log-linear, the physiology weight chosen inside the training faces only); the
   fused-minus-video UF1 gain gets a session-level paired bootstrap CI. At coupling 0 the gain must
   vanish.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "recognition"
HELP = "recognition accuracy (flowimages LOSO, fused vs video-only), inference ms, params and FLOPs"

logger = logging.getLogger(__name__)

HELD_OUT_FACE = "45-m7-di-ph.jpg"

# Part of the multimodal cache key: bump it whenever the sample builder's depth or physiology
# output changes, so a cached set never mixes old features with a new model.
# 2: PPG pulse amplitude, SCR/HR/breathing time course (25 physiology features); depth holes
#    filled on the aligned crop.
_BUILDER_VERSION = 2


_PARTS = ("inference", "flowimages", "multimodal", "composite", "dose")

#: raw emotions of the 4-class fusion sets (negative, positive, surprise, others)
FOUR_CLASS_EMOTIONS = {"happy": 1.0, "surprise": 1.0, "others": 1.0, "disgust": 0.25, "fear": 0.25, "anger": 0.25,
                       "sad": 0.25}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="hsta_tiny", help="fusion model for the multimodal part (default hsta_tiny)")
    parser.add_argument("--flow-model", default="ststnet", help="model for the flowimages LOSO (default ststnet)")
    parser.add_argument("--flow-subjects", type=int, default=68, help="synthetic subjects in the flowimages set (68)")
    parser.add_argument("--flow-seconds", type=float, default=15.0, help="seconds per flowimages session (15)")
    parser.add_argument("--sessions", type=int, default=20, help="multimodal sessions (subjects), default 20")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per multimodal session (60)")
    parser.add_argument("--folds", type=int, default=4, help="subject k-fold for the multimodal part (4)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    parser.add_argument("--workers", type=int, default=2, help="processes for generation and folds (2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed inference repeats (30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (folds and initialisation) for the fused vs video-only comparison; "
                             "several give its spread (default 0)")
    parser.add_argument("--parts", nargs="+", choices=_PARTS, default=list(_PARTS),
                        help="which parts to run (default all)")
    parser.add_argument("--no-cache", action="store_true", help="regenerate the synthetic sets")
    parser.add_argument("--faces", help="folder holding the held-out face (default: the shared faces folder)")
    parser.add_argument("--composite", metavar="DIR",
                        help="the real composite in the flowimages layout; enables the composite part")
    parser.add_argument("--composite-model", nargs="+", default=["flowcnn"],
                        help="models scored on the composite, the first is reported at top level (default flowcnn)")
    parser.add_argument("--composite-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="training seeds per composite model (default 0-4)")
    parser.add_argument("--composite-out", default=None,
                        help="folder keeping each seed's run for reuse (default: the cache folder)")
    parser.add_argument("--clip", help="a real ME clip (GIF/video, onset to offset) for the composite inference time")
    parser.add_argument("--couplings", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0],
                        help="physiology couplings of the dose part (default 0 0.25 0.5 1)")
    parser.add_argument("--dose-sessions", type=int, default=12,
                        help="synthetic sessions per coupling, faces used in turn (default 12)")
    parser.add_argument("--dose-faces", help="folder of faces for the dose part (default: every shared face + astronaut)")
    parser.add_argument("--dose-video-model", default="flowcnn", help="video model of the dose part (default flowcnn)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of sessions (default 2000)")


def _faces(args) -> list[str]:
    from mmer.synth import default_faces

    if args.faces:
        candidates = [Path(args.faces) / HELD_OUT_FACE]
    else:
        candidates = [Path(f) for f in default_faces() if Path(f).name == HELD_OUT_FACE]
    if not candidates or not candidates[0].is_file():
        raise FileNotFoundError(f"held-out face {HELD_OUT_FACE} not found (pass --faces DIR holding it)")
    faces = [str(candidates[0])]
    try:
        import skimage  # noqa: F401

        faces.append("astronaut")
    except ImportError:
        logger.warning("scikit-image missing: the benchmark uses one held-out face only")
    return faces


def _cached_set(name: str, params: dict, build, *, use_cache: bool):
    from mmer.models.data import SampleSet, cache_root

    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "bench" / f"{name}-{key}.npz"
    if use_cache and path.is_file():
        return SampleSet.load(path), 0.0, True
    t0 = time.perf_counter()
    ss = build()
    seconds = time.perf_counter() - t0
    ss.meta["generate_s"] = seconds
    ss.save(path)
    return ss, seconds, False


def _flowimages(args, faces) -> dict:
    from mmer.features.sample import SampleConfig
    from mmer.models.data import load_samples
    from mmer.models.synthetic import synthetic_sample_set, write_flowimages_set
    from mmer.models.train import TrainOptions, cross_validate

    cfg = SampleConfig(flow_method="tvl1")
    seeds = list(range(1000, 1000 + args.flow_subjects))
    params = {"faces": [Path(f).name for f in faces], "seeds": seeds, "seconds": args.flow_seconds, "me": 24.0,
              "cfg": cfg.as_dict(), "kind": "flow"}
    ss, gen_s, cached = _cached_set("flow", params, lambda: synthetic_sample_set(
        faces=faces, seeds=seeds, seconds=args.flow_seconds, me_per_min=24.0, mae_per_min=1.0, config=cfg,
        modalities=("video",), workers=args.workers), use_cache=not args.no_cache)
    with tempfile.TemporaryDirectory(prefix="mmer-flowimages-") as tmp:
        write_flowimages_set(Path(tmp) / "set", ss)
        t0 = time.perf_counter()
        flow = load_samples(f"flowimages:{Path(tmp) / 'set'}", config=cfg)
        res = cross_validate(flow, TrainOptions(model=args.flow_model, protocol="loso", labels="3", modalities=("video",),
                                                epochs=args.epochs, workers=args.workers), save_final=False)
        wall = time.perf_counter() - t0
    return {"uf1": res["uf1"], "uar": res["uar"], "accuracy": res["accuracy"], "n_samples": res["n_samples"],
            "n_subjects": res["n_subjects"], "n_folds": res["n_folds"], "model": args.flow_model,
            "loso_wall_s": wall, "generate_s": gen_s if not cached else ss.meta.get("generate_s"),
            "generated_now": not cached, "selection": res["selection"]}


def _multimodal(args, faces) -> dict:
    from mmer.features.sample import SampleConfig
    from mmer.models.synthetic import synthetic_sample_set
    from mmer.models.train import TrainOptions, cross_validate

    cfg = SampleConfig(flow_method="tvl1")
    seeds = list(range(2000, 2000 + args.sessions))
    params = {"faces": [Path(f).name for f in faces], "seeds": seeds, "seconds": args.seconds, "me": 6.0,
              "cfg": cfg.as_dict(), "kind": "multimodal", "builder": _BUILDER_VERSION}
    ss, gen_s, cached = _cached_set("multimodal", params, lambda: synthetic_sample_set(
        faces=faces, seeds=seeds, seconds=args.seconds, me_per_min=6.0, mae_per_min=1.0, config=cfg,
        workers=args.workers), use_cache=not args.no_cache)
    common = {"model": args.model, "protocol": "kfold", "folds": args.folds, "labels": "3", "epochs": args.epochs,
              "workers": args.workers}

    def fused_and_video(seed: int, **fused_kw) -> tuple[dict, dict]:
        opts = {**common, "seed": seed}
        return (cross_validate(ss, TrainOptions(**opts, modalities=("video", "depth", "physio")), save_final=False,
                               **fused_kw),
                cross_validate(ss, TrainOptions(**opts, modalities=("video",)), save_final=False))

    t0 = time.perf_counter()
    fused, video = fused_and_video(args.seeds[0], eval_subsets=[("depth", "physio"), ("video", "physio"),
                                                                ("video", "depth"), ("video",)])
    physio = cross_validate(ss, TrainOptions(**{**common, "model": "physionet"}, modalities=("physio",)),
                            save_final=False)
    per_seed = {"seed": [args.seeds[0]], "fused_uf1": [fused["uf1"]], "video_only_uf1": [video["uf1"]]}
    for seed in args.seeds[1:]:
        more_fused, more_video = fused_and_video(seed)
        per_seed["seed"].append(seed)
        per_seed["fused_uf1"].append(more_fused["uf1"])
        per_seed["video_only_uf1"].append(more_video["uf1"])
    gains = np.subtract(per_seed["fused_uf1"], per_seed["video_only_uf1"])
    per_seed.update(fused_minus_video_uf1=gains.tolist(), mean_gain=float(gains.mean()),
                    sd_gain=float(gains.std(ddof=1)) if len(gains) > 1 else None)
    return {
        "n_samples": fused["n_samples"], "n_subjects": fused["n_subjects"], "protocol": f"subject {args.folds}-fold",
        "model": args.model, "fused_uf1": fused["uf1"], "fused_uar": fused["uar"],
        "video_only_uf1": video["uf1"], "video_only_uar": video["uar"],
        "fused_minus_video_uf1": fused["uf1"] - video["uf1"],
        "physio_only_uf1": physio["uf1"],
        "fused_missing_uf1": {
            "video": fused["subsets"]["depth+physio"]["uf1"],
            "depth": fused["subsets"]["video+physio"]["uf1"],
            "physio": fused["subsets"]["video+depth"]["uf1"],
            "depth+physio": fused["subsets"]["video"]["uf1"],
        },
        "train_wall_s": time.perf_counter() - t0,
        "generate_s": gen_s if not cached else ss.meta.get("generate_s"), "generated_now": not cached,
        "selection": fused["selection"],
        "by_seed": per_seed,
    }


def _inference(args, faces) -> dict:
    import cv2
    import torch

    from mmer.dataset import EventKind
    from mmer.features.face import FaceTracker
    from mmer.features.sample import build_sample
    from mmer.models import Recognizer
    from mmer.synth import generate_session

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    session = generate_session(faces[0], seconds=12, seed=3000, min_me=1)
    rec = session.to_recording()
    ev = next(e for e in rec.events if e.kind is EventKind.ME)
    rgb, depth = rec.frames["rgb"], rec.frames["depth"]
    p0 = int(np.searchsorted(rgb.indices, ev.onset))
    p1 = int(np.searchsorted(rgb.indices, ev.apex))
    frames = [rgb.read(p) for p in range(p0, p1 + 1)]
    d = (depth.read(p0), depth.read(p1))
    t_on = float(rgb.timestamps[p0])
    physio = {}
    for k in ("eda", "ecg", "ppg", "rsp"):
        tr = rec.samples[k]
        sel = (tr.timestamps >= t_on - 2.0) & (tr.timestamps < t_on + 6.0)
        physio[k] = np.asarray(tr.data)[sel, 0]
    lo = float(rec.samples["eda"].timestamps[(rec.samples["eda"].timestamps >= t_on - 2.0)][0])
    recognizer = Recognizer()  # the packaged demo checkpoint, as the live pipeline runs it
    cfg = recognizer.config
    if cfg.flow_method == "tvl1":
        raise ValueError("the packaged checkpoint computes TV-L1 flow; the inference target excludes TV-L1")
    tracker = FaceTracker()
    keys = ("early_features", "early_model", "fused_features", "fused_model")
    wall = {k: [] for k in keys}
    cpu = {k: [] for k in keys}
    early_mask, fused_mask = ("video", "depth"), ("video", "depth", "physio")

    def early_features():
        return build_sample(config=cfg, frames=frames, depth=d, tracker=tracker)

    def fused_features():
        return build_sample(config=cfg, frames=frames, depth=d, physio=physio, physio_rate=200.0,
                            physio_onset=t_on - lo, tracker=tracker)

    def forward(sample, mods):
        recognizer.predict(sample, modalities=mods)

    try:
        early_features()  # warm-up (mesh acquisition)
        for _ in range(args.repeats):
            for key, fn in (("early", early_features), ("fused", fused_features)):
                w0, c0 = time.perf_counter(), time.process_time()
                sample = fn()
                w1, c1 = time.perf_counter(), time.process_time()
                forward(sample, early_mask if key == "early" else fused_mask)
                w2, c2 = time.perf_counter(), time.process_time()
                wall[f"{key}_features"].append((w1 - w0) * 1000)
                wall[f"{key}_model"].append((w2 - w1) * 1000)
                cpu[f"{key}_features"].append((c1 - c0) * 1000)
                cpu[f"{key}_model"].append((c2 - c1) * 1000)
    finally:
        tracker.close()
    med = {k: float(np.median(v)) for k, v in wall.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    return {
        "early_video_ms": med["early_features"] + med["early_model"],
        "fused_ms": med["fused_features"] + med["fused_model"],
        "early_video_cpu_ms": med_cpu["early_features"] + med_cpu["early_model"],
        "fused_cpu_ms": med_cpu["fused_features"] + med_cpu["fused_model"],
        **{f"{k}_ms": v for k, v in med.items()},
        **{f"{k}_cpu_ms": v for k, v in med_cpu.items()},
        "load_average": list(os.getloadavg()),
        "frames_per_candidate": len(frames), "flow": cfg.flow_method, "threads": 1, "repeats": args.repeats,
        "checkpoint": "demo",
        "note": "median per candidate with the packaged demo checkpoint (Recognizer.predict); early = video+depth "
                "features and a video+depth forward pass (the live early decision), fused adds "
                "neurokit2 physiology (EDA, ECG, PPG, RSP) over 8 s at 200 Hz; TV-L1 excluded; *_ms is wall time, *_cpu_ms the process "
                "CPU time (all threads), which a busy machine inflates less",
    }


def composite_runs(data: str | Path, model: str, seeds: list[int], *, workers: int, out: Path,
                   model_cfg: dict | None = None, log=None) -> list[tuple[dict, Path]]:
    """Strict LOSO of ``model`` on a flowimages folder, one run per seed, reusing finished runs.

    Each run lands in ``out/<model>[-<opts>]/seed<S>`` (``results.json``, ``predictions.csv``). The
    model's fixed schedule is used (``mmer train``'s defaults); nothing is chosen on a test subject.
    """
    from mmer.commands.train import schedule
    from mmer.models.data import load_samples
    from mmer.models.train import TrainOptions, cross_validate

    tag = model + "".join(f"-{k}={v}" for k, v in sorted((model_cfg or {}).items()))
    runs = []
    ss = None
    for seed in seeds:
        folder = Path(out) / tag / f"seed{seed}"
        done = folder / "results.json"
        if done.is_file():
            result = json.loads(done.read_text())
        else:
            ss = ss if ss is not None else load_samples(f"flowimages:{data}")
            opts = TrainOptions(model=model, labels="3", modalities=("video",), seed=seed, workers=workers,
                                model_cfg=dict(model_cfg or {}), **schedule(model))
            result = cross_validate(ss, opts, out_dir=folder, save_final=False, progress=False)
        if log is not None:
            log({"model": tag, "seed": seed, "uf1": result["uf1"], "uar": result["uar"], "wall_s": result["wall_s"]})
        runs.append((result, folder))
    return runs


def summarise_composite(runs: list[tuple[dict, Path]], dataset_of: dict[str, str]) -> dict:
    """Mean +- sd over seeds of UF1/UAR, per dataset, the leakage report and the seed ensemble."""
    import csv

    from mmer.models.metrics import recognition_scores

    results = [r for r, _ in runs]

    def stat(values) -> dict:
        v = np.asarray(values, dtype=float)
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                "values": v.round(4).tolist()}

    out = {"model": results[0]["model"], "model_cfg": results[0]["options"]["model_cfg"], "seeds": len(results),
           "selection": results[0]["selection"],
           "options": {k: results[0]["options"][k] for k in ("epochs", "batch_size", "lr", "weight_decay", "ema")},
           "n_samples": results[0]["n_samples"], "n_folds": results[0]["n_folds"],
           "uf1": stat([r["uf1"] for r in results]), "uar": stat([r["uar"] for r in results]),
           "loso_wall_s": stat([r["wall_s"] for r in results])}
    out["per_dataset"] = {name: {"uf1": stat([r["per_dataset"][name]["uf1"] for r in results]),
                                 "uar": stat([r["per_dataset"][name]["uar"] for r in results]),
                                 "n_samples": results[0]["per_dataset"][name]["n_samples"]}
                          for name in results[0]["per_dataset"]}
    out["leakage"] = {
        "note": "test-fold epoch selection on the same runs: NOT valid results, shown to size the inflation",
        "per_subject_uf1": stat([r["leakage"]["per_subject"]["uf1"] for r in results]),
        "per_subject_uar": stat([r["leakage"]["per_subject"]["uar"] for r in results]),
        "per_subject_inflation_uf1": stat([r["leakage"]["per_subject"]["inflation_uf1"] for r in results]),
        "common_epoch_uf1": stat([r["leakage"]["common_epoch"]["uf1"] for r in results]),
    }
    classes = results[0]["classes"]
    total: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for _, folder in runs:
        with open(folder / "predictions.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                p = np.array([float(row[f"prob_{c}"]) for c in classes])
                total[row["sample"]] = total.get(row["sample"], 0) + p
                labels[row["sample"]] = row["label"]
    ids = sorted(total)
    truth = np.array([classes.index(labels[i]) for i in ids])
    pred = np.array([total[i].argmax() for i in ids])
    ens = recognition_scores(truth, pred, class_names=classes)
    names = np.array([dataset_of.get(i, "all") for i in ids])
    out["seed_ensemble"] = {"uf1": ens["uf1"], "uar": ens["uar"], "per_dataset": {
        name: {k: recognition_scores(truth[names == name], pred[names == name], class_names=classes)[k]
               for k in ("uf1", "uar")} for name in dict.fromkeys(names.tolist())}}
    return out


def _composite_inference(args) -> dict:
    """ms per candidate with the packaged composite checkpoint on one core: flow features + model."""
    import cv2
    import torch

    from mmer.features.face import FaceTracker
    from mmer.features.sample import build_sample
    from mmer.models import COMPOSITE_CHECKPOINT, Recognizer

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rec = Recognizer(COMPOSITE_CHECKPOINT)
    frames = _clip_frames(args.clip) if args.clip else None
    if frames is None:
        return {"note": "no --clip given: model forward only"} | _forward_ms(rec, args.repeats)
    apex = int(np.argmax([np.abs(f.astype(float) - frames[0]).mean() for f in frames]))
    pair = [frames[0], frames[apex]]
    tracker = FaceTracker()
    feats, model, cpu = [], [], []
    try:
        build_sample(config=rec.config, frames=pair, tracker=tracker)
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            sample = build_sample(config=rec.config, frames=pair, tracker=tracker)
            t1 = time.perf_counter()
            rec.predict(sample, modalities=("video",))
            model.append((time.perf_counter() - t1) * 1000)
            feats.append((t1 - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    finally:
        tracker.close()
    return {"clip": Path(args.clip).name, "features_ms": float(np.median(feats)), "model_ms": float(np.median(model)),
            "total_ms": float(np.median(feats) + np.median(model)), "total_cpu_ms": float(np.median(cpu)),
            "flow": rec.config.flow_method, "threads": 1,
            "note": f"median per candidate: face mesh, alignment, {rec.config.flow_method} flow and strain at "
                    f"{rec.config.flow_size} px, then the model; *_ms wall, total_cpu_ms process CPU time"}


def _forward_ms(rec, repeats: int) -> dict:
    from mmer.features.sample import build_sample

    sample = build_sample(config=rec.config)
    sample.arrays["mask"][0] = 1.0
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        rec.predict(sample, modalities=("video",))
        times.append((time.perf_counter() - t0) * 1000)
    return {"model_ms": float(np.median(times[1:]))}


def _clip_frames(path: str) -> list[np.ndarray]:
    """Grey frames of a tight face clip, on a larger canvas so the face mesh finds the face."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.copyMakeBorder(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 64, 64, 64, 64,
                                         cv2.BORDER_REPLICATE))
    cap.release()
    if len(frames) < 2:
        raise ValueError(f"--clip {path}: fewer than 2 frames could be read")
    return frames


def _composite(args) -> dict:
    from mmer.models.data import cache_root
    from mmer.replay import open_dataset

    ds = open_dataset("flowimages", args.composite)
    dataset_of = {s.sample: s.extra.get("dataset", "all") for s in ds.samples}
    out = Path(args.composite_out) if args.composite_out else cache_root() / "bench" / "composite"
    summaries = {}
    for spec in args.composite_model:
        name, _, opts = spec.partition(":")
        model_cfg = dict(kv.split("=", 1) for kv in opts.split(",") if kv)
        model_cfg = {k: json.loads(v) for k, v in model_cfg.items()}
        runs = composite_runs(args.composite, name, list(args.composite_seeds), workers=args.workers, out=out,
                              model_cfg=model_cfg, log=lambda d: logger.info("composite %s", d))
        summaries[spec] = summarise_composite(runs, dataset_of)
    return {"data": str(args.composite), "runs": str(out), "models": summaries,
            "inference": _composite_inference(args), "load_average": list(os.getloadavg())}


def fusion_gain(video_proba: np.ndarray, physio_feats: np.ndarray, y: np.ndarray, *, faces, sessions,
                classes, n_boot: int = 2000, seed: int = 0) -> dict:
    """Late fusion of video probabilities with gradient boosting on physiology, against video alone.

    Fusion is log-linear, ``log p_video + w * log p_physio``. For each held-out face the boosting
    model is trained on the other faces, and ``w`` (from :data:`FUSION_WEIGHTS`) is the one that
    maximises the log-likelihood on those faces' own inner leave-one-face-out physiology
    probabilities, so the held-out face chooses nothing. When physiology carries no information,
    ``w`` goes to 0 and fusion returns the video decision. The CI of the fused-minus-video UF1
    resamples whole sessions with replacement (paired: both systems see the same resample).

    Parameters
    ----------
    video_proba : ndarray (n, k)
        Out-of-fold class probabilities of the video model, from folds grouped by face.
    physio_feats : ndarray (n, f)
        Physiology features per sample.
    y : ndarray (n,)
        Class indices.
    faces, sessions : sequence (n,)
        Face (fold group) and session (bootstrap unit) of every sample.
    classes : sequence of str
        Class names.
    """
    from mmer.models.metrics import recognition_scores

    faces, sessions, y = np.asarray(faces), np.asarray(sessions), np.asarray(y)
    k = len(classes)
    log_video = np.log(np.clip(video_proba, 1e-4, 1.0))
    physio = np.zeros((len(y), k))
    fused_log = np.zeros((len(y), k))
    weights = {}
    names = list(dict.fromkeys(faces.tolist()))
    for face in names:
        test = faces == face
        inner = np.zeros((len(y), k))
        for other in names:
            if other != face:
                part = faces == other
                inner[part] = _gbm_proba(physio_feats, y, ~test & ~part, part, k, seed)
        train = ~test
        log_inner = np.log(np.clip(inner[train], 1e-4, 1.0))
        w = max(FUSION_WEIGHTS, key=lambda w: (_log_likelihood(log_video[train] + w * log_inner, y[train]), -w))
        weights[face] = w
        physio[test] = _gbm_proba(physio_feats, y, train, test, k, seed)
        fused_log[test] = log_video[test] + w * np.log(np.clip(physio[test], 1e-4, 1.0))

    def uf1(proba, rows):
        return recognition_scores(y[rows], proba[rows].argmax(1), class_names=list(classes))["uf1"]

    every = np.arange(len(y))
    gain = uf1(fused_log, every) - uf1(video_proba, every)
    units = sorted(set(sessions.tolist()))
    by_unit = {u: np.flatnonzero(sessions == u) for u in units}
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        rows = np.concatenate([by_unit[u] for u in rng.choice(units, size=len(units), replace=True)])
        boot.append(uf1(fused_log, rows) - uf1(video_proba, rows))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"video_uf1": uf1(video_proba, every), "physio_uf1": uf1(physio, every), "fused_uf1": uf1(fused_log, every),
            "gain": float(gain), "gain_ci95": [float(lo), float(hi)], "physio_weight": weights,
            "n_samples": int(len(y)), "n_sessions": len(units), "n_faces": len(names), "bootstrap": n_boot}


#: weights of the physiology log-probabilities tried by the inner (training-faces) selection
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _gbm_proba(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier

    gbm = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)
    gbm.fit(x[train], y[train])
    out = np.zeros((int(np.count_nonzero(test)), k))
    out[:, gbm.classes_] = gbm.predict_proba(x[test])
    return out


def _log_likelihood(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    return float((z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).sum())


def _dose_faces(args) -> list[str]:
    from mmer.synth import default_faces

    if args.dose_faces:
        faces = sorted(str(p) for p in Path(args.dose_faces).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        faces = [str(f) for f in default_faces()]
    return faces + ["astronaut"]


def _dose(args) -> dict:
    from mmer.features.sample import SampleConfig
    from mmer.models.synthetic import synthetic_sample_set
    from mmer.models.train import TrainOptions, cross_validate, encode_labels

    faces = _dose_faces(args)
    cfg = SampleConfig(flow_method="dis", image_size=28)
    seeds = list(range(5000, 5000 + args.dose_sessions))
    out = {"faces": [Path(f).name for f in faces], "sessions": args.dose_sessions, "video_model": args.dose_video_model,
           "labels": "4class", "folds": "leave one face out", "couplings": {}}
    for c in args.couplings:
        params = {"faces": out["faces"], "seeds": seeds, "seconds": args.seconds, "cfg": cfg.as_dict(),
                  "kind": "dose", "coupling": c, "builder": _BUILDER_VERSION}
        ss, gen_s, cached = _cached_set(f"dose-c{c:g}", params, lambda c=c: synthetic_sample_set(
            faces=faces, seeds=seeds, seconds=args.seconds, me_per_min=6.0, mae_per_min=1.0,
            emotions=FOUR_CLASS_EMOTIONS, config=cfg, modalities=("video", "physio"), workers=args.workers,
            physio_coupling=c, progress=False), use_cache=not args.no_cache)
        sessions = list(ss.subjects)
        ss.subjects = [s.rsplit("-", 1)[0] for s in sessions]  # fold by face
        video = cross_validate(ss, TrainOptions(model=args.dose_video_model, labels="4", modalities=("video",),
                                                workers=args.workers, **_schedule(args.dose_video_model)),
                               save_final=False, progress=False, return_predictions=True)
        y, classes, _ = encode_labels(ss, "4")
        rows = np.asarray(video["rows"])
        keep = y[rows] >= 0
        res = fusion_gain(np.asarray(video["proba"])[keep], ss.arrays["physio_feats"][rows][keep], y[rows][keep],
                          faces=np.asarray(ss.subjects)[rows][keep], sessions=np.asarray(sessions)[rows][keep],
                          classes=classes, n_boot=args.bootstrap)
        out["couplings"][f"{c:g}"] = res | {"generate_s": gen_s if not cached else ss.meta.get("generate_s")}
    return out


def _schedule(model: str) -> dict:
    from mmer.commands.train import schedule

    return schedule(model)


def _sizes() -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmer.features.sample import SampleConfig
    from mmer.models import create_model, list_models
    from mmer.models.train import to_batch

    cfg = SampleConfig()
    inp = cfg.model_inputs()
    s, p = cfg.image_size, cfg.roi_size
    arrays = {"frames": np.zeros((1, inp["n_frames"], s, s), np.float32), "flow": np.zeros((1, 3, s, s), np.float32),
              "roi": np.zeros((1, inp["n_rois"], 3, p, p), np.float32), "depth": np.zeros((1, 2, s, s), np.float32),
              "physio": np.zeros((1, inp["physio_channels"], inp["physio_length"]), np.float32),
              "physio_feats": np.zeros((1, inp["n_physio_feats"]), np.float32), "mask": np.ones((1, 3), np.float32)}
    out = {}
    for name in list_models():
        model = create_model(name, n_classes=3, **inp).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(to_batch(arrays, np.array([0]), ("video", "depth", "physio")))
        out[name] = {"params": int(sum(q.numel() for q in model.parameters())), "flops": int(counter.get_total_flops())}
    return out


def run(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    if "composite" in args.parts and not args.composite:
        if args.parts == ["composite"]:
            raise ValueError("the composite part needs --composite DIR (the real composite, flowimages layout)")
        args.parts = [p for p in args.parts if p != "composite"]
    faces = _faces(args)
    sizes = _sizes()
    out, details = {}, {}
    if "dose" in args.parts:
        details["dose"] = dose = _dose(args)
        out["fusion_gain_by_coupling"] = {c: {"gain": r["gain"], "ci95": r["gain_ci95"], "video_uf1": r["video_uf1"]}
                                          for c, r in dose["couplings"].items()}
    if "composite" in args.parts:
        details["composite"] = comp = _composite(args)
        first = comp["models"][args.composite_model[0]]
        out.update(composite_uf1=first["uf1"]["mean"], composite_uf1_sd=first["uf1"]["sd"],
                   composite_uar=first["uar"]["mean"], composite_uar_sd=first["uar"]["sd"],
                   composite_seeds=first["seeds"], composite_loso_wall_s=first["loso_wall_s"]["mean"],
                   composite_leaky_uf1=first["leakage"]["per_subject_uf1"]["mean"],
                   composite_inference_ms=comp["inference"].get("total_ms", comp["inference"]["model_ms"]))
    if "inference" in args.parts:
        details["inference"] = inference = _inference(args, faces)
        out.update(inference_ms=inference["early_video_ms"], inference_fused_ms=inference["fused_ms"],
                   inference_cpu_ms=inference["early_video_cpu_ms"], inference_fused_cpu_ms=inference["fused_cpu_ms"])
    if "flowimages" in args.parts:
        details["flowimages"] = flow = _flowimages(args, faces)
        out.update(flowimages_uf1=flow["uf1"], flowimages_loso_wall_s=flow["loso_wall_s"])
    if "multimodal" in args.parts:
        details["multimodal"] = multi = _multimodal(args, faces)
        out.update({key: multi[key] for key in ("fused_uf1", "video_only_uf1", "fused_minus_video_uf1",
                                                "fused_missing_uf1")})
    out.update(params=sizes[args.model]["params"], flops=sizes[args.model]["flops"], **details, models=sizes,
               data={"faces": [Path(f).name for f in faces], "seeds": ">= 1000 (held out)"},
               wall_s=time.perf_counter() - t0)
    return out
