"""MeViS per-expression j/f and dataset J&F (metrics.md §3.1), by hand."""

import numpy as np
import pytest

from pipeline.metrics import ExpressionScore, MevisSummary, frame_scores, score_expression, summarize_mevis


def left_columns(n: int, size: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[:, :n] = True
    return mask


EMPTY = np.zeros((10, 10), dtype=bool)


def test_every_frame_counts_and_empty_frames_score_one():
    # 10x10 frames, r = ceil(0.008 * 14.14) = 1. Frame 0: both empty (J = F = 1). Frame 1: the prediction is empty
    # (0, 0). Frame 2: GT columns 0..4, prediction columns 0..3: J = 40 / 50, boundaries one column apart: F = 1.
    # No frame is dropped (unlike DAVIS semi-supervised) and there is no void.
    predictions = [EMPTY, EMPTY, left_columns(4)]
    targets = [EMPTY, left_columns(5), left_columns(5)]
    j, f, intersection, union = frame_scores(predictions, targets)
    assert j.tolist() == [1.0, 0.0, 0.8] and f.tolist() == [1.0, 0.0, 1.0]
    score = score_expression(predictions, targets)
    assert score == ExpressionScore(j=np.mean([1.0, 0.0, 0.8]), f=2 / 3, intersection=40, union=100, frames=3)
    assert score.j == pytest.approx(0.6, rel=1e-15)
    assert score.jf == (score.j + score.f) / 2


def test_no_target_expression():
    assert score_expression([EMPTY, EMPTY], [EMPTY, EMPTY]) == ExpressionScore(1.0, 1.0, 0, 0, 2)
    hit = left_columns(3)
    assert score_expression([hit, EMPTY], [EMPTY, EMPTY]) == ExpressionScore(0.5, 0.5, 0, 30, 2)


def test_value_scale_does_not_matter():
    predictions = [left_columns(4).astype(np.uint8) * 255, left_columns(6).astype(np.uint8) * 255]
    targets = [left_columns(5).astype(np.uint8), left_columns(5).astype(np.uint8)]
    assert score_expression(predictions, targets) == score_expression([p > 0 for p in predictions], targets)


def test_voids_are_optional_per_frame():
    void = np.zeros((10, 10), dtype=bool)
    void[:, 4] = True  # hides the only disagreement on frame 1
    score = score_expression([left_columns(4), left_columns(4)], [left_columns(4), left_columns(5)], [None, void])
    assert (score.j, score.intersection, score.union) == (1.0, 80, 80)


def test_summary_means_over_expressions():
    scores = [ExpressionScore(1.0, 0.5, 0, 0, 1), ExpressionScore(0.5, 0.0, 0, 0, 1), ExpressionScore.zero(3)]
    assert summarize_mevis(scores) == MevisSummary(j=0.5, f=0.5 / 3, jf=(0.5 + 0.5 / 3) / 2, expressions=3)


def test_visa_percent_rounds_with_python_round_at_the_end():
    # 100 * 0.69175 == 69.175: Python's round gives 69.17 (VISA's eval_mevis.py rounds float(np.mean(j))),
    # NumPy's would give 69.18 (the ReVOS script's per-expression rounding; see test_revos.py).
    assert 100 * 0.69175 == 69.175
    summary = summarize_mevis([ExpressionScore(0.69175, 0.69175, 0, 0, 1)], percent=True)
    assert summary == MevisSummary(69.17, 69.17, 69.17, 1)


def test_zero_and_row_round_trip():
    assert ExpressionScore.zero(4) == ExpressionScore(0.0, 0.0, 0, 0, 4)
    row = {"j": 0.25, "f": 0.5, "intersection": 3, "union": 12, "frames": 2, "kind": "referring"}
    assert ExpressionScore.from_row(row) == ExpressionScore(0.25, 0.5, 3, 12, 2)


def test_errors():
    with pytest.raises(ValueError, match="frame counts"):
        score_expression([EMPTY], [EMPTY, EMPTY])
    with pytest.raises(ValueError, match="at least one frame"):
        score_expression([], [])
    with pytest.raises(ValueError, match="no expressions"):
        summarize_mevis([])
