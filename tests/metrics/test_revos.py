"""ReVOS as VISA scores it (metrics.md §2.2-2.4): A and R on the 0/255 scale, the uint8 wrap, failures, rounding and
the referring / reasoning / overall aggregation. The golden expression was measured with VISA's tools/metrics.py and
the DAVIS functions on the same masks."""

import math

import numpy as np
import pytest

from pipeline.metrics import (
    REASONING,
    REFERRING,
    RevosPercent,
    RevosScore,
    accuracy,
    official_prediction,
    percent_row,
    robustness,
    score_revos_expression,
    sum_object_masks,
    summarize_revos,
)


def ellipse(h: int, w: int, cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 * rx * rx + (xx - cx) ** 2 * ry * ry < rx * rx * ry * ry


def block(top: int, left: int, size: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


# A 100x100 frame: the target is a 40x40 block (1600 px) inside a 50x50 foreground (2500 px).
TARGET = block(0, 0, 40)
FOREGROUND = block(0, 0, 50).astype(np.uint8)


def with_false_positives() -> np.ndarray:
    prediction = TARGET.copy()
    prediction[45, 0:10] = True  # 10 false positives inside the foreground
    return prediction


def test_false_positives_on_the_two_scales():
    gt = TARGET.astype(np.uint8)
    for scale, a, r in ((1, 0.999, 1 - 10 / (2500 + 1e-6)), (255, (10000 - 1610) / 10000, 0.0)):
        prediction = official_prediction(with_false_positives(), scale)
        assert accuracy(prediction, gt) == a
        # 0/1: neg = 10, R = 0.996; 0/255: each false positive adds 255, neg = 2550 > 2500, R = 0.
        assert robustness(prediction, gt, FOREGROUND) == r
    assert 1 - 10 / (2500 + 1e-6) == pytest.approx(0.996, abs=1e-9)


def test_overlapping_objects_wrap_in_uint8():
    # Object B overlaps object A on 100 px: the summed target is 2 there. The prediction is exactly the union.
    gt = sum_object_masks([TARGET, block(0, 0, 10), None], (100, 100))
    assert gt.dtype == np.uint8 and int((gt == 2).sum()) == 100 and int(gt.max()) == 2
    union = TARGET
    # 0/255: (1 - 2) * 255 = 255 * 255 = 1 (mod 256) per pixel: neg = 100, R = 1 - 100 / 2500 = 0.96.
    # 0/1: (1 - 2) * 1 = 255 per pixel: neg = 25500, R = 0.
    assert robustness(official_prediction(union, 255), gt, FOREGROUND) == 1 - 100 / (2500 + 1e-6)
    assert robustness(official_prediction(union, 1), gt, FOREGROUND) == 0.0
    # A with 0/255 is the true-negative fraction (foreground never equals 255): 0.84; with 0/1 only G = 2 differs.
    assert accuracy(official_prediction(union, 255), gt) == 0.84
    assert accuracy(official_prediction(union, 1), gt) == 0.99


def test_sum_wraps_past_255_objects():
    one = np.ones((1, 2), dtype=bool)
    assert sum_object_masks([one] * 257, (1, 2)).tolist() == [[1, 1]]


def test_empty_cases():
    empty = np.zeros((100, 100), dtype=bool)
    both = score_revos_expression([empty], [empty.astype(np.uint8)], [FOREGROUND])
    assert both == RevosScore(j=1.0, f=1.0, a=1.0, r=1.0, intersection=0, union=0, frames=1)
    # Empty target, 25 predicted pixels (0/255): J = F = 0; neg = 25 * 255 = 6375 > 2500: R = 0.
    hit = block(60, 60, 5)
    only_prediction = score_revos_expression([hit], [empty], [FOREGROUND])
    assert (only_prediction.j, only_prediction.f, only_prediction.r) == (0.0, 0.0, 0.0)
    assert only_prediction.a == (10000 - 25) / 10000
    # The 0/1 variant: R = 1 - 25 / 2500.
    assert score_revos_expression([hit], [empty], [FOREGROUND], foreground_value=1).r == 1 - 25 / (2500 + 1e-6)
    # Empty foreground: R = 0 if anything is predicted outside the target, else 1.
    no_foreground = np.zeros((100, 100), dtype=np.uint8)
    assert robustness(official_prediction(hit), empty.astype(np.uint8), no_foreground) == 0.0
    assert robustness(official_prediction(empty), empty.astype(np.uint8), no_foreground) == 1.0


def test_j_and_f_do_not_depend_on_the_scale():
    prediction, gt = with_false_positives(), TARGET.astype(np.uint8)
    on_255 = score_revos_expression([prediction], [gt], [FOREGROUND])
    on_1 = score_revos_expression([prediction], [gt], [FOREGROUND], foreground_value=1)
    assert on_255.j == on_1.j == 1600 / 1610 and on_255.f == on_1.f
    assert (on_255.intersection, on_255.union) == (1600, 1610)
    raw = score_revos_expression([official_prediction(prediction)], [gt], [FOREGROUND], foreground_value=None)
    assert raw == on_255


def golden_expression() -> tuple[list, list, list]:
    h, w = 50, 70
    gts, preds, fgs = [], [], []
    for t in range(4):
        a, b = ellipse(h, w, 20, 25 + t, 10, 15), ellipse(h, w, 28, 38 + t, 9, 12)
        gts.append(sum_object_masks([a, b], (h, w)))
        fgs.append((a | b | ellipse(h, w, 10, 60, 6, 8)).astype(np.uint8))
        preds.append(ellipse(h, w, 21, 27 + t, 8, 12) if t < 3 else np.zeros((h, w), dtype=bool))
    return preds, gts, fgs


def test_golden_expression_of_the_official_code():
    preds, gts, fgs = golden_expression()
    on_255 = score_revos_expression(preds, gts, fgs)
    assert (on_255.j, on_255.f, on_255.a, on_255.r) == (
        0.3175578034682081,
        0.08454312553373185,
        0.8022857142857143,
        0.9288715487048361,
    )
    assert percent_row(on_255) == RevosPercent(31.76, 8.45, 20.11, 80.23, 92.89)
    on_1 = score_revos_expression(preds, gts, fgs, foreground_value=1)
    assert (on_1.a, on_1.r) == (0.8481428571428571, 0.25)
    assert percent_row(on_1) == RevosPercent(31.76, 8.45, 20.11, 84.81, 25.0)


def test_per_expression_rounding_is_numpys():
    # 100 * 0.69175 == 69.175: the script's round(np.float64, 2) gives 69.18 (Python's round would give 69.17).
    row = percent_row(RevosScore(0.69175, 0.0, 0.69175, 0.69175, 0, 0, 1))
    assert row == RevosPercent(j=69.18, f=0.0, jf=34.59, a=69.18, r=69.18)
    assert percent_row(RevosScore(0.123456, 0.0, 1.0, 1.0, 0, 0, 1)) == RevosPercent(12.35, 0.0, 6.17, 100.0, 100.0)


def score(j: float, f: float, a: float = 1.0, r: float = 1.0) -> RevosScore:
    return RevosScore(j, f, a, r, 0, 0, 1)


def test_categories_overall_and_left_out_kinds():
    scores = [score(0.5, 1.0, 0.2, 0.4), score(0.25, 0.0, 0.4, 0.0), score(1.0, 0.5, 0.9, 1.0), score(0.0, 0.0)]
    kinds = [REFERRING, REFERRING, REASONING, "no-target"]
    summary = summarize_revos(scores, kinds)
    referring, reasoning, overall = summary.referring, summary.reasoning, summary.overall
    assert (referring.j, referring.f, referring.a, referring.r, referring.jf) == (37.5, 50.0, 30.0, 20.0, 43.75)
    assert (reasoning.j, reasoning.f, reasoning.a, reasoning.r, reasoning.jf) == (100.0, 50.0, 90.0, 100.0, 75.0)
    # overall is the macro average of the two categories (pooled J would be 58.33); type 2 is left out.
    assert (overall.j, overall.f, overall.a, overall.r, overall.jf) == (68.75, 50.0, 60.0, 60.0, 59.375)
    assert (referring.expressions, reasoning.expressions, overall.expressions) == (2, 1, 3)


def test_category_jf_is_from_the_rounded_means():
    # J row 12.35, F row 0.0, JF row 6.17; the category's JF is (12.35 + 0.0) / 2 = 6.175, not 6.17.
    summary = summarize_revos([score(0.123456, 0.0), score(1.0, 1.0)], [REFERRING, REASONING])
    assert summary.referring.jf == 6.175


def test_failed_expression_counts_as_zero():
    assert RevosScore.failed(5) == RevosScore(0.0, 0.0, 0.0, 0.0, 0, 0, 5)
    summary = summarize_revos([score(1.0, 1.0), RevosScore.failed()], [REFERRING, REFERRING])
    assert (summary.referring.j, summary.referring.r) == (50.0, 50.0)


def test_empty_category_is_nan():
    summary = summarize_revos([score(1.0, 1.0)], [REFERRING])
    assert summary.referring.j == 100.0
    assert math.isnan(summary.reasoning.j) and math.isnan(summary.overall.jf)


def test_errors_and_rows():
    frame = np.zeros((4, 4), dtype=bool)
    with pytest.raises(ValueError, match="frame 0"):
        score_revos_expression([frame], [np.zeros((4, 5), dtype=np.uint8)], [np.zeros((4, 4), dtype=np.uint8)])
    with pytest.raises(ValueError, match="one prediction, target and foreground"):
        score_revos_expression([frame], [], [])
    with pytest.raises(ValueError, match="uint8"):
        official_prediction(frame, None)
    with pytest.raises(ValueError, match="1..255"):
        official_prediction(frame, 256)
    with pytest.raises(ValueError, match="kinds"):
        summarize_revos([score(1.0, 1.0)], [])
    row = {"j": 0.5, "f": 0.25, "a": 1.0, "r": 0.0, "intersection": 1, "union": 2, "frames": 3, "kind": "reasoning"}
    assert RevosScore.from_row(row) == RevosScore(0.5, 0.25, 1.0, 0.0, 1, 2, 3)
