"""Strict subject-independent training and evaluation (LOSO or subject k-fold).

Model selection never sees the test subject: either the epoch count is fixed in advance
(``selection="fixed"``), or each fold holds out a validation split of its *training* subjects and
keeps the epoch that scores best there (``selection="val"``). Predictions of every fold are pooled
and scored once (MEGC convention: UF1 and UAR over the pooled confusion matrix). Every fold runs;
a fold that fails stops the run with its name, none is skipped. A subject with one sample is a fold
of one sample; a class absent from a fold's training subjects is trained without (the model can
still output it only through its prior) and listed in that fold's ``missing_train_classes``.

Each fold also records the test fold's predictions after every epoch. They never steer training;
they feed the *leakage report*: what selecting epochs on the test fold, as several published
codes do, would have reported on the same run (:func:`leakage_report`).

Runs are deterministic for a given seed: each fold seeds torch and its class-balanced sampler
from ``seed`` and the fold number, and uses one thread, so folds can run in parallel processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import csv
import json
import logging
import math
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmer.models._base import MODALITIES, modality_index
from mmer.models._registry import create_model
from mmer.models.checkpoint import save_checkpoint
from mmer.models.data import LABEL_CHOICES, SampleSet
from mmer.models.metrics import plot_confusion, recognition_scores

logger = logging.getLogger(__name__)

__all__ = ["TrainOptions", "encode_labels", "make_folds", "to_batch", "fit", "predict_proba", "cross_validate",
           "leakage_report", "VIDEO_KEYS"]

#: batch keys of the video modality besides ``frames``, ``flow`` and ``roi`` (four-image flow layout)
VIDEO_KEYS = ("flow_offset", "direction")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that defines a training run (stored in results and checkpoints).

    Parameters
    ----------
    model : str
        Registered model name.
    protocol : {"loso", "kfold"}
        Leave-one-subject-out, or ``folds`` subject-disjoint folds.
    labels : {"7", "4", "3", "objective"}
        Label protocol (:data:`~mmer.models.data.LABEL_CHOICES`).
    modalities : tuple of str
        Modalities the model may see; the others are masked out for training and testing.
    epochs, batch_size, lr, weight_decay : training schedule (AdamW, cosine decay).
    ema : float
        Decay of an exponential moving average of the weights, evaluated instead of the raw
        weights (0 = off).
    seed : int
        Seeds every fold.
    selection : {"fixed", "val"}
        Fixed epoch count, or best epoch on a validation split of the training subjects.
    val_fraction : float
        Share of training subjects held out for ``selection="val"`` (at least one subject).
    workers : int
        Folds run in parallel processes (one torch thread each).
    model_cfg : dict
        Extra architecture options for :func:`~mmer.models.create_model`.
    """

    model: str = "hsta"
    protocol: str = "loso"
    folds: int = 5
    labels: str = "3"
    modalities: tuple[str, ...] = MODALITIES
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    ema: float = 0.0
    seed: int = 0
    selection: str = "fixed"
    val_fraction: float = 0.2
    workers: int = 1
    model_cfg: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in ("loso", "kfold"):
            raise ValueError(f"protocol must be 'loso' or 'kfold', got {self.protocol!r}")
        if self.labels not in LABEL_CHOICES:
            raise ValueError(f"labels must be one of {list(LABEL_CHOICES)}, got {self.labels!r}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {list(self.modalities)}")
        if self.selection not in ("fixed", "val"):
            raise ValueError(f"selection must be 'fixed' or 'val', got {self.selection!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.workers < 1:
            raise ValueError("epochs, batch_size and workers must be >= 1")
        if self.protocol == "kfold" and self.folds < 2:
            raise ValueError(f"kfold needs folds >= 2, got {self.folds}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    def describe_selection(self) -> str:
        if self.selection == "fixed":
            return f"fixed epochs ({self.epochs}); the test subject is never used for selection"
        return (f"best epoch (of {self.epochs}) on a validation split of {self.val_fraction:.0%} of each fold's "
                "training subjects; the test subject is never used for selection")


def encode_labels(ss: SampleSet, labels: str) -> tuple[np.ndarray, list[str], int]:
    """Class index per sample under protocol ``labels`` (-1 where the protocol excludes it).

    Returns ``(y, class_names, n_excluded)``. A label the protocol cannot map raises ``ValueError``
    naming the sample.
    """
    from mmer.replay.labels import LabelError, get_protocol

    proto = get_protocol(LABEL_CHOICES[labels])
    y = np.full(len(ss), -1, dtype=np.int64)
    for i, raw in enumerate(ss.labels):
        entry = json.loads(raw) if raw.startswith("{") else {"emotion": raw, "objective": None}
        value = entry["objective"] if proto.name == "objective" else entry["emotion"]
        if value is None:
            raise ValueError(f"sample {ss.ids[i]} (subject {ss.subjects[i]}) has no "
                             f"{'objective class' if proto.name == 'objective' else 'emotion'} label")
        try:
            idx = proto.encode(str(value))
        except LabelError as err:
            raise ValueError(f"sample {ss.ids[i]} (subject {ss.subjects[i]}): {err}") from err
        y[i] = -1 if idx is None else idx
    return y, list(proto.classes), int((y < 0).sum())


def make_folds(subjects: Sequence[str], *, protocol: str, folds: int = 5, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Subject-disjoint test folds: ``[(name, test_rows), ...]`` covering every row once."""
    subjects = np.asarray(subjects)
    uniq = sorted(set(subjects.tolist()))
    if len(uniq) < 2:
        raise ValueError(f"subject-independent evaluation needs at least 2 subjects, got {len(uniq)}")
    if protocol == "loso":
        return [(str(s), np.flatnonzero(subjects == s)) for s in uniq]
    k = min(folds, len(uniq))
    order = np.random.default_rng(seed).permutation(len(uniq))
    groups = [[uniq[j] for j in order[i::k]] for i in range(k)]
    return [(f"fold{i}", np.flatnonzero(np.isin(subjects, g))) for i, g in enumerate(groups)]


def to_batch(arrays: dict[str, np.ndarray], rows: np.ndarray, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tensors for ``rows``; modalities outside ``modalities`` are masked (and their data zeroed)."""
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in arrays.items()}
    mask = batch["mask"].clone().float()
    for m in MODALITIES:
        if m not in modalities:
            mask[:, modality_index(m)] = 0.0
    batch["mask"] = mask
    keys = [("frames", "video"), ("flow", "video"), ("roi", "video"), ("depth", "depth"), ("physio", "physio"),
            ("physio_feats", "physio")] + [(k, "video") for k in VIDEO_KEYS if k in batch]
    for key, m in keys:
        keep = mask[:, modality_index(m)].reshape(-1, *([1] * (batch[key].dim() - 1)))
        batch[key] = batch[key].float() * keep
    return batch


def predict_proba(model: torch.nn.Module, arrays: dict, rows: np.ndarray, modalities: Sequence[str],
                  *, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for ``rows`` (eval mode, no gradients)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            out.append(torch.softmax(model(to_batch(arrays, rows[i : i + batch_size], modalities)), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.inp.n_classes), np.float32)


def _model_cfg(ss: SampleSet, n_classes: int, opts: TrainOptions) -> dict:
    return {**ss.config.model_inputs(), "n_classes": n_classes, **opts.model_cfg}


def fit(
    arrays: dict,
    y: np.ndarray,
    train_rows: np.ndarray,
    *,
    opts: TrainOptions,
    model_cfg: dict,
    seed: int,
    val_rows: np.ndarray | None = None,
    record_rows: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train one model on ``train_rows`` with class-balanced sampling.

    With ``val_rows`` the weights of the epoch with the best validation UF1 are kept. With
    ``record_rows`` the evaluated model's class probabilities on those rows after every epoch land
    in ``history["record"]`` (for the leakage report; they never influence training). With
    ``opts.ema`` the returned model is the moving average of the weights.
    Returns ``(model, history)``.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = create_model(opts.model, **model_cfg)
    if not set(model.uses) & set(opts.modalities):
        raise ValueError(f"model {opts.model!r} reads {list(model.uses)} but only {list(opts.modalities)} are allowed")
    n_classes = model_cfg["n_classes"]
    ytr = y[train_rows]
    counts = np.bincount(ytr, minlength=n_classes).astype(float)
    weights = torch.from_numpy(1.0 / counts[ytr])
    steps = max(1, math.ceil(len(train_rows) / opts.batch_size))
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=steps * opts.epochs, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    averaged = None
    if opts.ema > 0:
        averaged = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(opts.ema), use_buffers=True)
    evaluated = averaged.module if averaged is not None else model
    history: dict = {"loss": [], "val_uf1": [], "best_epoch": opts.epochs, "record": []}
    best_state, best_score = None, -1.0
    bar = tqdm(range(opts.epochs), desc="epochs", leave=False, disable=not progress)
    for epoch in bar:
        model.train()
        draws = torch.multinomial(weights, steps * opts.batch_size, replacement=True, generator=gen).numpy()
        total = 0.0
        for s in range(steps):
            rows = train_rows[draws[s * opts.batch_size : (s + 1) * opts.batch_size]]
            if len(rows) < 2:  # BatchNorm needs two samples
                continue
            batch = to_batch(arrays, rows, opts.modalities)
            loss = model.training_loss(batch, torch.from_numpy(y[rows]), loss_fn)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(loss.detach())
        history["loss"].append(total / steps)
        if record_rows is not None:
            history["record"].append(predict_proba(evaluated, arrays, record_rows, opts.modalities))
        if val_rows is not None and len(val_rows):
            pred = predict_proba(evaluated, arrays, val_rows, opts.modalities).argmax(1)
            score = recognition_scores(y[val_rows], pred, class_names=[str(c) for c in range(n_classes)])["uf1"]
            history["val_uf1"].append(score)
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(evaluated.state_dict())
                history["best_epoch"] = epoch + 1
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    if best_state is not None:
        evaluated.load_state_dict(best_state)
    evaluated.eval()
    return evaluated, history


def _split_val(subjects: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    uniq = sorted(set(subjects[rows].tolist()))
    if len(uniq) < 2:
        raise ValueError("selection='val' needs at least two training subjects per fold")
    n_val = max(1, int(round(fraction * len(uniq))))
    val_subj = set(np.random.default_rng(seed).choice(uniq, size=n_val, replace=False).tolist())
    is_val = np.isin(subjects[rows], list(val_subj))
    return rows[~is_val], rows[is_val]


# --- fold workers -------------------------------------------------------------------------------
_PAYLOAD: dict = {}


def _init_worker(payload: dict) -> None:
    torch.set_num_threads(1)
    _PAYLOAD.clear()
    _PAYLOAD.update(payload)


def _run_fold(k: int, name: str, test_rows: np.ndarray, progress: bool = False) -> dict:
    p = _PAYLOAD
    opts: TrainOptions = p["opts"]
    y, subjects = p["y"], p["subjects"]
    usable = np.flatnonzero(y >= 0)
    train_rows = np.setdiff1d(usable, test_rows)
    test_rows = np.intersect1d(test_rows, usable)
    seed = opts.seed * 1000 + k
    val_rows = None
    if opts.selection == "val":
        train_rows, val_rows = _split_val(subjects, train_rows, opts.val_fraction, seed)
    test_subj = set(subjects[test_rows].tolist())
    assert not test_subj & set(subjects[train_rows].tolist()), "test subject leaked into training"
    if val_rows is not None:
        assert not test_subj & set(subjects[val_rows].tolist()), "test subject leaked into selection"
    if len(train_rows) == 0:
        raise ValueError(f"fold {name}: no training samples")
    n_classes = p["model_cfg"]["n_classes"]
    missing = sorted(set(range(n_classes)) - set(y[train_rows].tolist()) & set(y[usable].tolist()))
    if missing:
        logger.warning("fold %s: class(es) %s have no training sample; the fold is trained without them",
                       name, [p["classes"][c] for c in missing])
    t0 = time.perf_counter()
    model, hist = fit(p["arrays"], y, train_rows, opts=opts, model_cfg=p["model_cfg"], seed=seed,
                      val_rows=val_rows, record_rows=test_rows, progress=progress)
    proba = predict_proba(model, p["arrays"], test_rows, opts.modalities)
    subsets = {"+".join(sub): predict_proba(model, p["arrays"], test_rows, sub).tolist() for sub in p["eval_subsets"]}
    return {
        "fold": name,
        "test_rows": test_rows.tolist(),
        "proba": proba.tolist(),
        "subset_proba": subsets,
        "train_subjects": sorted(set(subjects[train_rows].tolist())),
        "val_subjects": sorted(set(subjects[val_rows].tolist())) if val_rows is not None else [],
        "test_subjects": sorted(test_subj),
        "best_epoch": hist["best_epoch"],
        "missing_train_classes": [p["classes"][c] for c in missing],
        "epoch_proba": [e.tolist() for e in hist["record"]],
        "final_loss": hist["loss"][-1] if hist["loss"] else None,
        "seconds": time.perf_counter() - t0,
    }


def cross_validate(
    ss: SampleSet,
    opts: TrainOptions,
    *,
    out_dir: str | Path | None = None,
    save_final: bool = True,
    progress: bool = True,
    eval_subsets: Sequence[Sequence[str]] = (),
    return_predictions: bool = False,
) -> dict:
    """Run the subject-independent protocol and score the pooled predictions.

    Parameters
    ----------
    ss : SampleSet
        Labelled samples.
    opts : TrainOptions
        Run definition.
    out_dir : path, optional
        Where to write ``results.json``, ``predictions.csv``, ``confusion.png`` and (with
        ``save_final``) ``model.pt``: the same model trained on every subject.
    progress : bool
        tqdm bars on stderr.
    eval_subsets : sequence of modality subsets
        Also score each fold's model with only these modalities fed at test time (for example
        ``[("video",), ("video", "physio")]``: how it degrades when a modality is missing); the
        scores land in ``subsets``.
    return_predictions : bool
        Also return the pooled out-of-fold ``rows`` and their class ``proba`` (for late fusion).

    Returns
    -------
    dict
        ``uf1, uar, accuracy, n_samples, n_folds, model, modalities, selection`` and details.
    """
    t_start = time.perf_counter()
    y, classes, n_excluded = encode_labels(ss, opts.labels)
    usable = np.flatnonzero(y >= 0)
    if len(usable) == 0:
        raise ValueError(f"no sample has a label in protocol {LABEL_CHOICES[opts.labels]!r}")
    subjects = np.asarray(ss.subjects)
    folds = [(n, rows) for n, rows in make_folds(subjects[usable], protocol=opts.protocol, folds=opts.folds,
                                                     seed=opts.seed)]
    folds = [(n, usable[rows]) for n, rows in folds]
    model_cfg = _model_cfg(ss, len(classes), opts)
    probe = create_model(opts.model, **model_cfg)
    if not set(probe.uses) & set(opts.modalities):
        raise ValueError(f"model {opts.model!r} reads {list(probe.uses)} but only {list(opts.modalities)} were chosen")
    for sub in eval_subsets:
        if not sub or not set(sub) <= set(opts.modalities):
            raise ValueError(f"eval subset {list(sub)} must be a non-empty subset of {list(opts.modalities)}")
    payload = {"arrays": ss.arrays, "y": y, "subjects": subjects, "opts": opts, "model_cfg": model_cfg,
               "classes": classes,
               "eval_subsets": [tuple(sub) for sub in eval_subsets]}
    workers = max(1, min(opts.workers, len(folds), os.cpu_count() or 1))
    results = []
    bar = tqdm(total=len(folds), desc=f"{opts.protocol} folds", unit="fold", disable=not progress)
    if workers == 1:
        threads = torch.get_num_threads()
        _init_worker(payload)
        try:
            for k, (name, rows) in enumerate(folds):
                results.append(_run_fold(k, name, rows, progress))
                bar.update(1)
        finally:
            torch.set_num_threads(threads)
    else:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(payload,)) as pool:
            futs = {pool.submit(_run_fold, k, name, rows): name for k, (name, rows) in enumerate(folds)}
            for fut in cf.as_completed(futs):
                try:
                    results.append(fut.result())
                except Exception as err:
                    raise RuntimeError(f"fold {futs[fut]} failed: {err}") from err
                bar.update(1)
    bar.close()
    if len(results) != len(folds):
        raise RuntimeError(f"{len(folds) - len(results)} folds did not finish")
    results.sort(key=lambda r: [f[0] for f in folds].index(r["fold"]))

    rows = np.concatenate([np.asarray(r["test_rows"], dtype=int) for r in results])
    proba = np.concatenate([np.asarray(r["proba"], dtype=float).reshape(-1, len(classes)) for r in results])
    fold_of = np.concatenate([[r["fold"]] * len(r["test_rows"]) for r in results])
    pred = proba.argmax(1)
    scores = recognition_scores(y[rows], pred, class_names=classes)
    empty = [c for c, info in scores["per_class"].items() if info["support"] == 0]
    out = {
        "uf1": scores["uf1"],
        "uar": scores["uar"],
        "accuracy": scores["accuracy"],
        "n_samples": scores["n_samples"],
        "n_folds": len(results),
        "model": opts.model,
        "modalities": list(opts.modalities),
        "selection": opts.describe_selection(),
        "protocol": opts.protocol,
        "labels": LABEL_CHOICES[opts.labels],
        "classes": classes,
        "empty_classes": empty,
        "excluded_by_protocol": n_excluded,
        "n_subjects": len(set(subjects[usable].tolist())),
        "per_class": scores["per_class"],
        "confusion": scores["confusion"],
        "params": int(sum(p.numel() for p in probe.parameters())),
        "options": opts.as_dict(),
        "features": ss.config.as_dict(),
        "source": ss.meta.get("source"),
        "subsets": {
            key: {k: v for k, v in recognition_scores(
                y[rows], np.concatenate([np.asarray(r["subset_proba"][key]).reshape(-1, len(classes)) for r in results]
                ).argmax(1), class_names=classes).items() if k in ("uf1", "uar", "accuracy")}
            for key in results[0]["subset_proba"]
        },
        "folds": [{k: r[k] for k in ("fold", "test_subjects", "val_subjects", "best_epoch", "missing_train_classes",
                                     "final_loss", "seconds")}
                  | {"n_test": len(r["test_rows"])} for r in results],
        "leakage": leakage_report(results, y, classes, strict_uf1=scores["uf1"], strict_uar=scores["uar"]),
        "per_dataset": _per_dataset(ss, rows, y, pred, classes),
        "wall_s": None,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_predictions(out_dir / "predictions.csv", ss, rows, y, pred, proba, classes, fold_of)
        plot_confusion(np.asarray(scores["confusion"]), classes, out_dir / "confusion.png",
                       title=f"{opts.model} {opts.protocol} UF1={scores['uf1']:.3f}")
        out["predictions"] = str(out_dir / "predictions.csv")
        out["confusion_png"] = str(out_dir / "confusion.png")
        if save_final:
            epochs = opts.epochs
            if opts.selection == "val":
                epochs = int(np.median([r["best_epoch"] for r in results]))
            final_opts = TrainOptions(**{**opts.as_dict(), "modalities": tuple(opts.modalities), "epochs": epochs,
                                         "selection": "fixed"})
            torch_threads = torch.get_num_threads()
            model, _ = fit(ss.arrays, y, usable, opts=final_opts, model_cfg=model_cfg, seed=opts.seed * 1000 + 999,
                           progress=progress)
            torch.set_num_threads(torch_threads)
            save_checkpoint(out_dir / "model.pt", model, class_names=classes, labels=LABEL_CHOICES[opts.labels],
                            modalities=list(opts.modalities), features=ss.config.as_dict(),
                            train={**opts.as_dict(), "epochs": epochs, "source": ss.meta.get("source"),
                                   "n_samples": int(len(usable)), "cv_uf1": scores["uf1"]})
            out["checkpoint"] = str(out_dir / "model.pt")
    out["wall_s"] = time.perf_counter() - t_start
    if return_predictions:
        out["rows"], out["proba"] = rows.tolist(), proba.tolist()
    if out_dir is not None:
        (Path(out_dir) / "results.json").write_text(json.dumps(_plain(out), indent=2))
    return out


def leakage_report(folds: Sequence[dict], y: np.ndarray, classes: Sequence[str], *, strict_uf1: float,
                   strict_uar: float) -> dict:
    """What selecting epochs on the test folds would have reported on the same run.

    Two leaky protocols are scored from the per-epoch test predictions each fold recorded:
    ``common_epoch`` keeps the one epoch whose pooled test UF1 is best (a learning curve read on the
    test data), and ``per_subject`` keeps, for each fold, the epoch with the most correct test
    predictions (later epochs win ties), as several public composite codes do. With a fixed
    schedule the last recorded epoch is the strict model, so ``common_epoch`` is never below the
    strict figure, and with one recorded epoch both equal it.

    Parameters
    ----------
    folds : sequence of dict
        Fold results with ``test_rows`` and ``epoch_proba`` (epochs x test rows x classes).
    y : ndarray
        Class index of every row.
    classes : sequence of str
        Class names.
    strict_uf1, strict_uar : float
        The strict figures of the same run, reported beside the leaky ones.
    """
    n_classes = len(classes)
    recorded = [np.asarray(f["epoch_proba"], dtype=float).reshape(-1, len(f["test_rows"]), n_classes) for f in folds]
    n_epochs = min(len(r) for r in recorded) if recorded else 0
    report: dict = {"strict_uf1": strict_uf1, "strict_uar": strict_uar, "epochs_recorded": n_epochs}
    if n_epochs == 0:
        return report
    recorded = [r[len(r) - n_epochs:] for r in recorded]
    truth = [y[np.asarray(f["test_rows"], dtype=int)] for f in folds]
    pooled_truth = np.concatenate(truth)

    def pooled(epochs: Sequence[int]) -> dict:
        pred = np.concatenate([r[e].argmax(1) for r, e in zip(recorded, epochs)])
        return recognition_scores(pooled_truth, pred, class_names=list(classes))

    curve = [pooled([e] * len(recorded)) for e in range(n_epochs)]
    best = max(range(n_epochs), key=lambda e: (curve[e]["uf1"], e))
    picks = [max(range(n_epochs), key=lambda e: (int((r[e].argmax(1) == t).sum()), e))
             for r, t in zip(recorded, truth)]
    per_subject = pooled(picks)
    report.update(
        common_epoch={"uf1": curve[best]["uf1"], "uar": curve[best]["uar"], "epoch": best + 1,
                      "inflation_uf1": curve[best]["uf1"] - strict_uf1},
        per_subject={"uf1": per_subject["uf1"], "uar": per_subject["uar"],
                     "inflation_uf1": per_subject["uf1"] - strict_uf1,
                     "epochs_picked": [int(e) + 1 for e in picks]},
        test_curve_uf1=[c["uf1"] for c in curve],
    )
    return report


def _per_dataset(ss: SampleSet, rows: np.ndarray, y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Pooled scores within each source dataset (``meta["dataset"]``, one name per sample)."""
    names = ss.meta.get("dataset")
    if not names:
        return {}
    names = np.asarray(names)[rows]
    out = {}
    for name in dict.fromkeys(names.tolist()):
        sel = names == name
        sc = recognition_scores(y[rows][sel], pred[sel], class_names=list(classes))
        out[name] = {"uf1": sc["uf1"], "uar": sc["uar"], "accuracy": sc["accuracy"], "n_samples": sc["n_samples"]}
    return out


def _plain(obj):
    from mmer.commands._output import to_jsonable

    return to_jsonable(obj)


def _write_predictions(path: Path, ss: SampleSet, rows, y, pred, proba, classes, folds) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "sample", "label", "pred", "fold", *[f"prob_{c}" for c in classes]])
        for i, r in enumerate(rows):
            w.writerow([ss.subjects[r], ss.ids[r], classes[y[r]], classes[pred[i]], folds[i],
                        *[f"{p:.5f}" for p in proba[i]]])
