"""Recognition metrics against hand-computed values."""

import numpy as np
import pytest

from mmer.models.metrics import confusion_matrix, plot_confusion, recognition_scores


def test_scores_match_hand_computation():
    # classes a, b, c; true/pred pairs chosen so every count is easy to check by hand
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 2]
    r = recognition_scores(y_true, y_pred, class_names=["a", "b", "c"])
    # a: TP2 FP1 FN1 -> F1 4/6; b: TP1 FP1 FN1 -> 2/4; c: TP4 FP1 FN1 -> 8/10
    assert r["per_class"]["a"]["f1"] == pytest.approx(4 / 6)
    assert r["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["c"]["f1"] == pytest.approx(0.8)
    assert r["uf1"] == pytest.approx((4 / 6 + 0.5 + 0.8) / 3)
    # recalls 2/3, 1/2, 4/5
    assert r["uar"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["n_samples"] == 10
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 4]]


def test_pooling_differs_from_fold_averaging():
    # two folds; pooled UF1 is computed once over all predictions (MEGC), not averaged per fold
    f1 = ([0, 0, 1], [0, 0, 0])
    f2 = ([1, 1, 0], [1, 1, 1])
    pooled = recognition_scores(f1[0] + f2[0], f1[1] + f2[1], class_names=["x", "y"])
    # pooled: x TP2 FP1 FN1 -> 2/3; y TP2 FP1 FN1 -> 2/3
    assert pooled["uf1"] == pytest.approx(2 / 3)
    per_fold = [recognition_scores(t, p, class_names=["x", "y"])["uf1"] for t, p in (f1, f2)]
    assert np.mean(per_fold) != pytest.approx(pooled["uf1"])


def test_absent_class_is_not_scored_but_a_false_prediction_is():
    r = recognition_scores([0, 0, 1], [0, 0, 1], class_names=["a", "b", "c"])
    assert r["uf1"] == pytest.approx(1.0) and r["classes_scored"] == ["a", "b"]
    assert np.isnan(r["per_class"]["c"]["f1"])
    r = recognition_scores([0, 0, 1], [0, 2, 1], class_names=["a", "b", "c"])
    assert r["per_class"]["c"]["f1"] == 0.0  # predicted but never true: counts as F1 = 0
    assert r["uf1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert r["uar"] == pytest.approx((0.5 + 1.0) / 2)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], n_classes=3)
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1], [0], n_classes=3)


def test_confusion_png(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion(np.array([[3, 1], [0, 2]]), ["a", "b"], path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
