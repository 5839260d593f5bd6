"""Mask geometry and track summaries against pycocotools and hand-counted cases."""

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipeline.labels.signals import geometry, track


def test_geometry_of_hand_made_masks():
    mask = np.zeros((6, 10), dtype=bool)
    mask[1:4, 2:7] = True  # 3 x 5
    mask[5, 9] = True
    shape = geometry(mask)
    assert (shape.area, shape.bbox) == (16, (2, 1, 8, 5))
    assert shape.area_fraction == pytest.approx(16 / 60)
    assert geometry(np.zeros((4, 4), dtype=bool)) == geometry(np.zeros((9, 2), dtype=bool))
    assert geometry(np.zeros((4, 4), dtype=bool)).bbox == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="height, width"):
        geometry(np.zeros(4, dtype=bool))


def test_geometry_equals_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.0, 0.3)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        shape = geometry(mask)
        assert shape.area == int(mask_utils.area(rle))
        if shape.area:
            assert shape.bbox == tuple(int(v) for v in mask_utils.toBbox(rle))


def test_track_summary():
    a = np.zeros((4, 4), dtype=bool)
    a[:2, :2] = True  # 4 pixels
    b = np.zeros((4, 4), dtype=bool)
    b[:2, :3] = True  # 6 pixels, 4 shared with a
    empty = np.zeros((4, 4), dtype=bool)
    summary = track([a, b, empty, empty])
    assert summary.frames == 4 and summary.present_fraction == 0.5
    # consecutive J: 4/6, 0 (b against nothing), 1 (two empty masks)
    assert summary.temporal_iou == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert math.isnan(track([a]).temporal_iou) and track([a]).present_fraction == 1.0
    with pytest.raises(ValueError):
        track([])
