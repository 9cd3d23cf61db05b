"""Labelled sample sets drawn straight from the synthetic lab (:mod:`mmer.synth`), in memory.

Each (face, seed) pair is one synthetic session and counts as one *subject* for LOSO. Sessions are
generated and their micro-expressions turned into samples in worker processes; nothing is written
in the CAS(ME)^3 layout, which keeps benchmarks fast. :func:`write_flowimages_set` then writes a
set's onset->apex flow in the precomputed-flow layout, so the flowimages path can be exercised
without the licensed CASME II / SAMM / SMIC composite.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mmer.features.sample import MODALITIES, SampleConfig, stack_samples
from mmer.models.data import SampleSet, write_flowimages

__all__ = ["THREE_CLASS_EMOTIONS", "synthetic_sample_set", "write_flowimages_set"]

#: Emotion weights that give balanced negative / positive / surprise classes and no ``others``.
THREE_CLASS_EMOTIONS = {"happy": 1.0, "surprise": 1.0, "disgust": 0.25, "fear": 0.25, "anger": 0.25, "sad": 0.25}

_FACES: dict = {}


def _session_samples(job: dict) -> dict:
    import torch

    from mmer.dataset import EventKind
    from mmer.features.face import FaceTracker
    from mmer.features.sample import sample_from_recording
    from mmer.synth import SynthConfig, generate_session, load_face

    torch.set_num_threads(1)
    face = _FACES.get(job["face"])
    if face is None:
        face = _FACES[job["face"]] = load_face(job["face"], size=(640, 480))
    synth = SynthConfig(me_per_min=job["me_per_min"], mae_per_min=job["mae_per_min"], emotions=job["emotions"],
                        physio_coupling=job.get("physio_coupling", 1.0))
    session = generate_session(face, seconds=job["seconds"], seed=job["seed"], config=synth,
                               subject=job["subject"], min_me=job["min_me"])
    rec = session.to_recording()
    cfg = SampleConfig(**job["config"])
    arrays, labels, ids = [], [], []
    tracker = FaceTracker()
    try:
        for ev in rec.events:
            if ev.kind is not EventKind.ME:
                continue
            s = sample_from_recording(rec, ev, config=cfg, modalities=job["modalities"], tracker=tracker)
            arrays.append(s)
            labels.append(json.dumps({"emotion": ev.emotion, "objective": ev.objective_class}))
            ids.append(f"{job['subject']}/{ev.onset}")
    finally:
        tracker.close()
    return {"samples": arrays, "labels": labels, "ids": ids, "subject": job["subject"]}


def synthetic_sample_set(
    *,
    faces: Sequence[str],
    seeds: Sequence[int],
    seconds: float = 60.0,
    me_per_min: float = 6.0,
    mae_per_min: float = 1.0,
    emotions: Mapping[str, float] = THREE_CLASS_EMOTIONS,
    config: SampleConfig | None = None,
    modalities: Sequence[str] = MODALITIES,
    workers: int = 1,
    progress: bool = True,
    physio_coupling: float = 1.0,
) -> SampleSet:
    """Generate one session per seed (faces used in turn) and build a sample per micro-expression.

    Parameters
    ----------
    faces : sequence of str
        Face photographs (paths or ``"astronaut"``); session ``i`` uses ``faces[i % len(faces)]``.
    seeds : sequence of int
        One session per seed; the subject id is ``<face stem>-<seed>``.
    seconds, me_per_min, mae_per_min, emotions :
        Generator knobs (:class:`mmer.synth.SynthConfig`). MEs at least a few seconds apart keep
        the physiological responses of neighbouring events from overlapping.
    config : SampleConfig, optional
        Sample-builder options.
    modalities : sequence of str
        Modalities to extract (the others are left masked, which saves time).
    workers : int
        Parallel processes.
    physio_coupling : float
        Scale of the event-locked physiological responses, the only carrier of emotion in the
        physiology (0 = none; :class:`mmer.synth.SynthConfig`).
    """
    if not faces or not seeds:
        raise ValueError("synthetic_sample_set needs at least one face and one seed")
    cfg = config or SampleConfig()
    jobs = []
    for i, seed in enumerate(seeds):
        face = str(faces[i % len(faces)])
        stem = "astronaut" if face == "astronaut" else Path(face).stem
        jobs.append({"face": face, "seed": int(seed), "subject": f"{stem}-{seed}", "seconds": seconds,
                     "me_per_min": me_per_min, "mae_per_min": mae_per_min, "emotions": dict(emotions),
                     "config": cfg.as_dict(), "modalities": list(modalities),
                     "min_me": max(1, int(me_per_min * seconds / 60.0 * 0.8)),
                     "physio_coupling": float(physio_coupling)})
    results = []
    bar = tqdm(total=len(jobs), desc="synthetic sessions", unit="session", disable=not progress)
    if workers <= 1:
        for job in jobs:
            results.append(_session_samples(job))
            bar.update(1)
    else:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for res in pool.map(_session_samples, jobs):
                results.append(res)
                bar.update(1)
    bar.close()
    samples, labels, subjects, ids = [], [], [], []
    for res in results:
        samples += res["samples"]
        labels += res["labels"]
        ids += res["ids"]
        subjects += [res["subject"]] * len(res["samples"])
    if not samples:
        raise ValueError("the synthetic sessions hold no micro-expression")
    return SampleSet(stack_samples(samples), labels, subjects, ids, cfg,
                     {"source": f"synthetic:{len(jobs)} sessions, faces {[Path(f).name for f in faces]}, "
                                f"seeds {min(seeds)}-{max(seeds)}"})


def write_flowimages_set(out: str | Path, ss: SampleSet, *, label_key: str = "emotion") -> Path:
    """Write a sample set's flow maps (and apex crops) in the flowimages layout."""
    labels = [json.loads(raw)[label_key] for raw in ss.labels]
    present = ss.arrays["mask"][:, 0] > 0
    if not present.all():
        raise ValueError(f"{int((~present).sum())} samples have no video; cannot write their flow images")
    apex = [np.clip((f[-1] + 0.5) * 255.0, 0, 255).astype(np.uint8) for f in ss.arrays["frames"]]
    names = [i.replace("/", "_") for i in ss.ids]
    return write_flowimages(out, ss.arrays["flow"], subjects=ss.subjects, samples=names, labels=labels, apex=apex)
