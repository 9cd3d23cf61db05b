"""Train the shipped composite checkpoint: flowcnn on onset->apex flow only, every composite subject.

Only the onset->apex flow is used (``offset=False``) because the live early decision is taken at
the apex, before any apex->offset flow exists. The schedule is flowcnn's fixed one; nothing is
selected. Its strict LOSO figures come from ``scripts/recognition_composite.py --model-opt
offset=false`` on the same data (see docs/model-card-composite.md).

Usage::

    python scripts/recognition_checkpoint.py --data ../shared/data/composite-causalnet \\
        --out mmer/data/checkpoints/composite.pt
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch


def main() -> None:
    from mmer.models import flowcnn, save_checkpoint
    from mmer.models.data import LABEL_CHOICES, load_samples
    from mmer.models.train import TrainOptions, encode_labels, fit

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    ss = load_samples(f"flowimages:{args.data}")
    y, classes, _ = encode_labels(ss, "3")
    rows = np.flatnonzero(y >= 0)
    opts = TrainOptions(model="flowcnn", labels="3", modalities=("video",), seed=args.seed, **flowcnn.TRAINING)
    cfg = {**ss.config.model_inputs(), "n_classes": len(classes), "offset": False}
    model, _ = fit(ss.arrays, y, rows, opts=opts, model_cfg=cfg, seed=args.seed)
    # live samples are built with this config: the composite's 28 px and TV-L1, the flow its authors used
    features = replace(ss.config, flow_method="tvl1")
    save_checkpoint(args.out, model, class_names=classes, labels=LABEL_CHOICES["3"], modalities=["video"],
                    features=features.as_dict(),
                    train={**opts.as_dict(), "source": "composite-causalnet (CASME II + SAMM + SMIC)",
                           "n_samples": int(len(rows)), "n_subjects": len(set(np.asarray(ss.subjects)[rows]))})
    print(f"wrote {args.out}: {sum(q.numel() for q in model.parameters())} parameters, {len(rows)} samples")


if __name__ == "__main__":
    main()
