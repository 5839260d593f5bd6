"""Region similarity J (metrics.md §1.1): hand-computed values for every edge case, plus properties."""

import numpy as np
import pytest

from pipeline.metrics import RegionCounts, jaccard, region_counts, region_similarity, region_similarity_frames

# 2x3 frame: target covers (0,0),(0,1); prediction covers (0,0),(0,2),(1,0). I = 1, U = 4.
TARGET = np.array([[1, 1, 0], [0, 0, 0]], dtype=np.uint8)
PREDICTION = np.array([[1, 0, 1], [1, 0, 0]], dtype=np.uint8)


def test_counts_and_j_by_hand():
    assert region_counts(PREDICTION, TARGET) == RegionCounts(intersection=1, union=4)
    assert region_similarity(PREDICTION, TARGET) == 0.25


def test_empty_prediction_and_empty_target_is_one():
    empty = np.zeros((4, 5), dtype=np.uint8)
    assert region_counts(empty, empty) == RegionCounts(0, 0)
    assert region_similarity(empty, empty) == 1.0
    assert jaccard(RegionCounts(0, 0)) == 1.0


def test_one_side_empty_is_zero():
    empty = np.zeros_like(TARGET)
    assert region_similarity(empty, TARGET) == 0.0
    assert region_similarity(PREDICTION, empty) == 0.0


def test_full_frame_against_empty_is_zero():
    full, empty = np.ones((3, 3), dtype=bool), np.zeros((3, 3), dtype=bool)
    assert region_similarity(full, empty) == 0.0
    assert region_similarity(full, full) == 1.0


def test_value_scale_does_not_matter():
    # Only non-zero matters: 0/1, 0/255, bool and object ids give the same J.
    for scale in (1, 255, 7):
        assert region_similarity(PREDICTION * scale, TARGET) == 0.25
    assert region_similarity(PREDICTION.astype(bool), (TARGET * 255).astype(np.uint8)) == 0.25


def test_void_pixels_leave_both_counts():
    void = np.array([[0, 0, 1], [0, 0, 0]], dtype=bool)  # removes the false positive (0,2)
    assert region_counts(PREDICTION, TARGET, void) == RegionCounts(1, 3)
    assert region_similarity(PREDICTION, TARGET, void) == 1 / 3
    void_hit = np.array([[1, 0, 0], [0, 0, 0]], dtype=bool)  # removes the only true positive
    assert region_counts(PREDICTION, TARGET, void_hit) == RegionCounts(0, 3)


def test_everything_void_is_an_empty_union():
    assert region_similarity(PREDICTION, TARGET, np.ones_like(TARGET)) == 1.0


def test_frames_vector_matches_per_frame():
    empty = np.zeros_like(TARGET)
    predictions = np.stack([empty, empty, PREDICTION])
    targets = np.stack([empty, TARGET, TARGET])
    j = region_similarity_frames(predictions, targets)
    assert j.dtype == np.float64
    assert j.tolist() == [1.0, 0.0, 0.25]
    voids = np.stack([empty, empty, np.array([[0, 0, 1], [0, 0, 0]])])
    assert region_similarity_frames(predictions, targets, voids).tolist() == [1.0, 0.0, 1 / 3]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        region_counts(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="void"):
        region_counts(PREDICTION, TARGET, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="T, H, W"):
        region_similarity_frames(PREDICTION, TARGET)


def test_properties_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.random((2, 9, 11)) < rng.random()
        j = region_similarity(a, b)
        assert 0.0 <= j <= 1.0
        assert j == region_similarity(b, a)
        counts = region_counts(a, b)
        assert counts.intersection == np.count_nonzero(a & b) and counts.union == np.count_nonzero(a | b)
        assert region_similarity(a, a) == 1.0
