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
4. **size**: parameters and FLOPs per model (``torch.utils.flop_counter``), one sample.
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


_PARTS = ("inference", "flowimages", "multimodal")


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
    faces = _faces(args)
    sizes = _sizes()
    out, details = {}, {}
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
