"""MEGC spotting matcher and scores against hand-computed cases."""

from __future__ import annotations

import pytest

from mmer.cli import main
from mmer.dataset import Event, EventKind
from mmer.spotting import Prediction, interval_iou, match_intervals, read_predictions, spotting_scores, write_predictions


def test_iou_inclusive_frame_sets():
    # [10..19] and [15..24]: 5 shared frames, 15 in the union.
    assert interval_iou((10, 19), (15, 24)) == pytest.approx(5 / 15)
    # Touching intervals share one frame: [0..4] and [4..8] -> 1/9.
    assert interval_iou((0, 4), (4, 8)) == pytest.approx(1 / 9)
    assert interval_iou((0, 4), (5, 8)) == 0.0
    assert interval_iou((3, 3), (3, 3)) == 1.0


def test_threshold_is_inclusive():
    # [0..9] vs [0..19]: 10/20 = exactly 0.5 -> a match.
    assert match_intervals([(0, 9)], [(0, 19)]) == [(0, 0, 0.5)]
    # [0..9] vs [0..20]: 10/21 < 0.5 -> no match.
    assert match_intervals([(0, 9)], [(0, 20)]) == []


def test_one_to_one_two_predictions_one_truth():
    # Both predictions overlap the truth with IoU >= 0.5; only one may count.
    pairs = match_intervals([(10, 20), (11, 21)], [(10, 20)])
    assert len(pairs) == 1
    assert pairs[0][:2] == (0, 0)  # the exact one (IoU 1) beats IoU 10/12


def test_one_to_one_prefers_more_matches_over_greedy_iou():
    # Truths A=[0..9], B=[2..11]. P0=[0..9]: IoU 1.0 with A, 8/12 with B. P1=[0..6]: IoU 0.7 with A,
    # 5/12 with B (not eligible). Greedy by IoU takes P0-A and leaves P1 unmatched (1 TP); the
    # maximum-cardinality rule pairs P0-B and P1-A (2 TP).
    pairs = match_intervals([(0, 9), (0, 6)], [(0, 9), (2, 11)])
    assert sorted((p, g) for p, g, _ in pairs) == [(0, 1), (1, 0)]
    assert sorted(round(iou, 4) for _, _, iou in pairs) == [round(8 / 12, 4), 0.7]


def test_pooled_scores_by_type():
    truth = [
        Event("s1", "a", 10, 19, 14, EventKind.ME),
        Event("s1", "a", 100, 159, 120, EventKind.MAE),
        Event("s1", "a", 300, 305, 302, EventKind.BLINK),  # never scored
        Event("s2", "b", 50, 59, 55, EventKind.ME),
    ]
    preds = [
        Prediction("s1", "a", 11, 20, kind="me"),    # TP ME (IoU 9/11)
        Prediction("s1", "a", 12, 19, kind="me"),    # duplicate -> FP ME
        Prediction("s1", "a", 100, 150, kind="me"),  # right place, wrong type -> FP ME
        Prediction("s1", "a", 300, 305, kind="me"),  # a blink -> FP ME
        Prediction("s2", "b", 200, 209, kind="mae"), # FP MaE
    ]
    r = spotting_scores(preds, truth)
    assert (r["me"]["tp"], r["me"]["fp"], r["me"]["fn"]) == (1, 3, 1)
    assert (r["mae"]["tp"], r["mae"]["fp"], r["mae"]["fn"]) == (0, 1, 1)
    assert (r["overall"]["tp"], r["overall"]["fp"], r["overall"]["fn"]) == (1, 4, 2)
    assert r["me"]["precision"] == pytest.approx(1 / 4)
    assert r["me"]["recall"] == pytest.approx(1 / 2)
    assert r["me"]["f1"] == pytest.approx(2 / (2 + 3 + 1))
    assert r["overall"]["f1"] == pytest.approx(2 / (2 + 4 + 2))
    assert r["mae"]["precision"] == 0.0 and r["mae"]["f1"] == 0.0


def test_matching_never_crosses_videos():
    truth = [Event("s1", "a", 10, 19, 14)]
    preds = [Prediction("s1", "b", 10, 19)]
    r = spotting_scores(preds, truth)
    assert (r["me"]["tp"], r["me"]["fp"], r["me"]["fn"]) == (0, 1, 1)


def test_empty_everything_is_zero_not_nan():
    r = spotting_scores([], [])
    assert r["overall"] == {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_csv_round_trip_and_typing_by_length(tmp_path):
    path = tmp_path / "pred.csv"
    write_predictions(path, [Prediction("s1", "a", 1, 5, 3, 2.5, "me"), Prediction("s1", "a", 40, 90, 60, 4.0, "mae")])
    rows = read_predictions(path)
    assert rows[0] == Prediction("s1", "a", 1, 5, 3, 2.5, "me")
    assert rows[1].kind == "mae"
    bare = tmp_path / "bare.csv"
    bare.write_text("subject,video,onset,offset\ns1,a,0,15\ns1,a,100,117\n")
    kinds = [r.kind for r in read_predictions(bare)]
    assert kinds == ["me", "mae"]  # 16 frames is an ME at 30 fps, 18 is not


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("subject,video,onset\ns1,a,3\n", "missing column(s) offset"),
        ("subject,video,onset,offset\ns1,a,x,4\n", "row 2: onset/offset must be integers"),
        ("subject,video,onset,offset\ns1,a,1,4\ns1,a,9,4\n", "row 3: offset 4 is before onset 9"),
        ("subject,video,onset,offset,type\ns1,a,1,4,blink\n", "row 2: type must be me or mae"),
    ],
)
def test_malformed_csv_names_file_and_row(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.csv") as err:
        read_predictions(path)
    assert fragment in str(err.value)


def test_evaluate_command_missing_file_is_clean_error(tmp_path, capsys):
    code = main(["evaluate", "spotting", "--pred", str(tmp_path / "nope.csv"), "--truth", str(tmp_path), "--json"])
    assert code == 2
    assert "prediction file not found" in capsys.readouterr().err


def test_chain_keeps_maximum_cardinality():
    # Truths of 10 frames every 3 frames; each prediction equals the next truth (IoU 1) and overlaps
    # its own truth by 7/13 = 0.54. Pairing each prediction with its own truth gives 5 matches;
    # pairing it with the exact next one gives only 4 but a larger total of 1 + IoU (8 > 7.69).
    truth = [(3 * i, 3 * i + 9) for i in range(5)]
    predicted = [(3 * i + 3, 3 * i + 12) for i in range(5)]
    assert interval_iou(predicted[0], truth[0]) == pytest.approx(7 / 13)
    pairs = match_intervals(predicted, truth)
    assert sorted((p, g) for p, g, _ in pairs) == [(i, i) for i in range(5)]
