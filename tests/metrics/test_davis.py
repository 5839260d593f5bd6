"""DAVIS aggregation (metrics.md §1.3-1.5): db_statistics, object splitting, both tasks, the global J&F, and the
scipy-equal assignment. The sequence golden values were measured with the official evaluation functions
(davis2017-evaluation evaluation.py, utils.py, davis.py, results.py) on the same masks, and checked by hand."""

import itertools
import math

import numpy as np
import pytest

from pipeline.metrics import (
    ObjectResult,
    Statistics,
    annotation_objects,
    evaluate_objects,
    evaluate_sequence,
    frame_statistics,
    linear_sum_assignment,
    result_objects,
    summarize_davis,
)


def ellipse(h: int, w: int, cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 * rx * rx + (xx - cx) ** 2 * ry * ry < rx * rx * ry * ry


def test_statistics_by_hand():
    # T = 4: ids = round(linspace(1, 4, 5) + 1e-10) - 1 = [0, 1, 2, 2, 3]; D = mean(v[0:2]) - mean(v[2:4]).
    assert frame_statistics(np.array([1.0, 0.0, 1.0, 1.0])) == Statistics(0.75, 0.75, -0.5)


def test_statistics_with_nan_frames():
    # NaN is skipped by the means but counts as a miss in the recall (nan > 0.5 is False).
    # T = 3: ids = [0, 1, 1, 2, 2]: D = nanmean([nan, 1.0]) - nanmean([0.2]).
    stats = frame_statistics(np.array([np.nan, 1.0, 0.2]))
    assert stats == Statistics(0.6, 1 / 3, 1.0 - 0.2)


def test_statistics_of_one_frame():
    assert frame_statistics(np.array([0.3])) == Statistics(0.3, 0.0, 0.0)


def test_decay_wraps_past_255_frames():
    # uint8 indices: T = 255 ends at 254 (fine); T = 256 ends at 255 and 255 + 1 wraps to 0: an empty last bin.
    # T = 300: ids [0, 75, 150, 224, 299 -> 43]: also empty. Both give a NaN decay, as the official code does.
    ramp = np.linspace(1.0, 0.0, 255)
    assert frame_statistics(ramp).decay == pytest.approx(np.mean(ramp[0:65]) - np.mean(ramp[191:255]), abs=0)
    assert math.isnan(frame_statistics(np.ones(256)).decay)
    assert math.isnan(frame_statistics(np.ones(300)).decay)
    assert frame_statistics(np.ones(300)).mean == 1.0


def test_worked_aggregation_example():
    # metrics.md §1.5: 5 frames, frame 3 empty in both (1.0), frame 4 an empty prediction (0.0).
    j = np.array([53200 / 64800] * 3 + [1.0, 0.0])
    f = np.array([0.03434343434343434] * 3 + [1.0, 0.0])
    summary = summarize_davis([ObjectResult("seq_1", j, f)])
    assert j[0] == 0.8209876543209876
    assert summary.j_mean == 0.6925925925925925
    assert summary.f_mean == 0.2206060606060606
    assert summary.jf_mean == 0.45659932659932656


def test_global_means_pool_objects_over_sequences():
    ones, zeros = np.ones(3), np.zeros(3)
    objects = [ObjectResult("a_1", ones, ones)] + [ObjectResult(f"b_{k}", zeros, zeros) for k in (1, 2, 3)]
    summary = summarize_davis(objects)
    assert summary.j_mean == 0.25 and summary.f_mean == 0.25 and summary.jf_mean == 0.25  # per sequence: 0.5
    assert summary.j_recall == 0.25
    assert summary.per_object == {"a_1": (1.0, 1.0), "b_1": (0.0, 0.0), "b_2": (0.0, 0.0), "b_3": (0.0, 0.0)}


def test_annotation_objects_void_and_frame0_count():
    annotation = np.array([[[1, 2, 255]], [[3, 1, 255]]])  # (T=2, H=1, W=3); id 3 appears after frame 0
    objects, void = annotation_objects(annotation)
    assert objects.shape == (2, 2, 1, 3)  # N = max id of frame 0 = 2: object 3 is never scored
    assert objects[0].astype(int).tolist() == [[[1, 0, 0]], [[0, 1, 0]]]
    assert objects[1].astype(int).tolist() == [[[0, 1, 0]], [[0, 0, 0]]]
    assert void.astype(int).tolist() == [[[0, 0, 1]], [[0, 0, 1]]]


def test_result_objects_count_the_largest_id():
    result = np.array([[[0, 2]], [[0, 0]]])
    objects = result_objects(result)
    assert objects.shape == (2, 2, 1, 2)
    assert not objects[0].any() and objects[1].astype(int).tolist() == [[[0, 1]], [[0, 0]]]
    assert result_objects(np.zeros((2, 1, 2), dtype=int)).shape == (0, 2, 1, 2)


def two_objects(frames: int = 4) -> np.ndarray:
    annotation = np.zeros((frames, 6, 8), dtype=np.uint8)
    annotation[:, 1:3, 1:3] = 1
    annotation[:, 3:5, 4:7] = 2
    return annotation


def test_semi_supervised_drops_first_and_last_frames():
    annotation = two_objects()
    result = annotation.copy()
    result[0] = 0  # wrong on the first and last frames only
    result[3] = 0
    objects = evaluate_sequence("s", annotation, result, "semi-supervised")
    assert [o.name for o in objects] == ["s_1", "s_2"]
    assert [o.j.tolist() for o in objects] == [[1.0, 1.0], [1.0, 1.0]]
    assert [o.f.tolist() for o in objects] == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="drops the first and last"):
        evaluate_sequence("s", annotation[:2], result[:2], "semi-supervised")


def test_semi_supervised_ignores_void_but_unsupervised_applies_it():
    annotation = two_objects(3)
    annotation[:, 1, 3] = 255  # a void pixel next to object 1
    result = np.where(annotation == 255, 1, annotation)  # object 1 also covers the void pixel
    semi = evaluate_sequence("s", annotation, result, "semi-supervised")
    assert semi[0].j.tolist() == [4 / 5]  # the void pixel counts as a false positive
    unsupervised = evaluate_sequence("s", annotation, result, "unsupervised")
    assert unsupervised[0].j.tolist() == [1.0, 1.0, 1.0]


def test_semi_supervised_zero_fills_missing_objects_and_refuses_extra_ones():
    annotation = two_objects(3)
    result = np.where(annotation == 2, 0, annotation)  # object 2 never predicted
    objects = evaluate_sequence("s", annotation, result, "semi-supervised")
    assert objects[1].j.tolist() == [0.0] and objects[1].f.tolist() == [0.0]
    extra = annotation.copy()
    extra[:, 0, 0] = 3
    with pytest.raises(ValueError, match="3 predicted objects but only 2"):
        evaluate_sequence("s", annotation, extra, "semi-supervised")
    with pytest.raises(ValueError, match="255 predicted objects"):
        evaluate_sequence("s", annotation, np.where(annotation == 1, 255, annotation), "semi-supervised")


def test_unsupervised_matching_and_proposal_order():
    annotation = two_objects(3)
    result = np.zeros_like(annotation)
    result[annotation == 1] = 3  # proposal 3 is object 1
    result[annotation == 2] = 1  # proposal 1 is object 2 less one pixel; proposal 2 is empty
    result[:, 3, 4] = 0
    objects = evaluate_sequence("s", annotation, result, "unsupervised")
    # Both objects are found; rows follow the proposals in ascending order, so "s_1" is object 2's match.
    assert [o.j.tolist() for o in objects] == [[5 / 6] * 3, [1.0] * 3]
    gt_objects, void = annotation_objects(annotation)
    j, _ = evaluate_objects(gt_objects, gt_objects[:0], void, "unsupervised")
    assert j.shape == (2, 3)  # no proposals at all: zero-filled, J = 0
    assert j.tolist() == [[0.0] * 3, [0.0] * 3]
    many = (np.arange(6 * 8) % 22).reshape(1, 6, 8)
    with pytest.raises(ValueError, match="21 proposals"):
        evaluate_sequence("s", annotation[:1], many.astype(np.uint8), "unsupervised")
    with pytest.raises(ValueError, match="task"):
        evaluate_objects(gt_objects, gt_objects, void, "semi")


def golden_sequence() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5 frames of 60x90: two moving objects, void in the first two columns, two results."""
    h, w = 60, 90
    gt, res, semi = (np.zeros((5, h, w), dtype=np.uint8) for _ in range(3))
    for t in range(5):
        gt[t][ellipse(h, w, 20 + t, 25 + 2 * t, 12, 18)] = 1
        gt[t][ellipse(h, w, 40, 65 - t, 10, 14)] = 2
        gt[t][:, :2] = 255
        res[t][ellipse(h, w, 22 + t, 27 + 2 * t, 11, 17)] = 3  # proposal 3 follows object 1
        res[t][ellipse(h, w, 41, 63 - t, 10, 15)] = 1  # proposal 1 follows object 2
        if t % 2 == 0:
            res[t][ellipse(h, w, 8, 80, 5, 6)] = 2  # a spurious proposal
        semi[t][ellipse(h, w, 20 + t, 25 + 2 * t, 12, 18)] = 1
        semi[t][ellipse(h, w, 40, 65 - t, 10, 14)] = 2
    res[4][res[4] == 1] = 0  # object 2's proposal missing on the last frame
    semi[2][semi[2] == 2] = 0  # object 2 missed on frame 2
    semi[0] = semi[4] = 0  # first and last frames are not scored
    return gt, res, semi


def test_golden_unsupervised_sequence():
    gt, res, _ = golden_sequence()
    objects = evaluate_sequence("seq", gt, res, "unsupervised")
    assert objects[0].j.tolist() == [0.8012170385395537] * 4 + [0.0]
    assert objects[0].f.tolist() == [0.6595744680851064] * 4 + [0.0]
    assert objects[1].j.tolist() == [0.7574047954866009] * 5
    assert objects[1].f.tolist() == [0.44642857142857145] * 5
    s = summarize_davis(objects)
    assert (s.jf_mean, s.j_mean, s.j_recall, s.j_decay, s.f_mean, s.f_recall, s.f_decay) == (
        0.5931166430537251,
        0.699189213159122,
        0.9,
        0.20030425963488843,
        0.4870440729483283,
        0.4,
        0.1648936170212766,
    )


def test_golden_semi_supervised_sequence():
    gt, _, semi = golden_sequence()
    objects = evaluate_sequence("seq", gt, semi, "semi-supervised")
    assert [o.j.tolist() for o in objects] == [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    s = summarize_davis(objects)
    # By hand: J.M = (1 + 2/3) / 2; object 2's decay, T = 3, is mean([1, 0]) - mean([1]) = -0.5.
    assert (s.jf_mean, s.j_mean, s.j_recall, s.j_decay) == (
        0.8333333333333333,
        0.8333333333333333,
        0.8333333333333333,
        -0.25,
    )


def test_assignment_hand_cases():
    rows, cols = linear_sum_assignment(np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]))
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    rows, cols = linear_sum_assignment(np.zeros((3, 3)))
    assert cols.tolist() == [0, 1, 2]  # a constant matrix gives the identity (scipy #11602)
    rows, cols = linear_sum_assignment(np.array([[5.0, 9.0], [1.0, 9.0], [9.0, 0.0]]))
    assert rows.tolist() == [1, 2] and cols.tolist() == [0, 1]  # tall: rows ascending
    # Ties between equal proposals: scipy picks the first free column, row by row.
    rows, cols = linear_sum_assignment(-np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]
    assert linear_sum_assignment(np.zeros((2, 0)))[0].tolist() == []


def test_assignment_is_optimal():
    rng = np.random.default_rng(2)
    for _ in range(30):
        nr, nc = (int(n) for n in rng.integers(1, 6, size=2))
        cost = rng.integers(0, 4, size=(nr, nc)).astype(float)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(nr, nc) and len(set(cols.tolist())) == len(cols)
        best = min(
            sum(cost[r, c] for r, c in zip(rs, cs, strict=True))
            for rs in itertools.combinations(range(nr), min(nr, nc))
            for cs in itertools.permutations(range(nc), min(nr, nc))
        )
        assert cost[rows, cols].sum() == best
