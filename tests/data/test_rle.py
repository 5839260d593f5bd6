"""COCO RLE helpers against hand-computed runs and pycocotools' own conventions (metrics.md §5)."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipeline.data import rle


@pytest.mark.parametrize(
    ("mask", "runs"),
    [
        (np.ones((2, 2), bool), [0, 4]),
        (np.zeros((2, 2), bool), [4]),
        (np.array([[1, 0], [0, 1]], bool), [0, 1, 2, 1]),  # column-major: 1, 0 | 0, 1
    ],
)
def test_runs_by_hand(mask, runs):
    encoded = rle.encode(mask)
    assert encoded["size"] == [2, 2] and isinstance(encoded["counts"], str)
    assert np.array_equal(rle.decode({"size": [2, 2], "counts": runs}), mask)  # uncompressed input
    assert np.array_equal(rle.decode(encoded), mask)


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 3), (64, 48), (480, 854)):
        mask = rng.random(shape) > 0.7
        assert np.array_equal(rle.decode(rle.encode(mask)), mask)
    assert np.array_equal(rle.decode(rle.encode(mask.astype(np.uint8) * 255)), mask)  # 0/255 encodes as 0/1


def test_size_is_checked():
    encoded = rle.encode(np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"RLE size \[3, 4\] disagrees with the image size \[4, 3\]"):
        rle.decode(encoded, (4, 3))
    with pytest.raises(ValueError, match="not a COCO RLE"):
        rle.decode({"counts": "abc"})
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        rle.encode(np.ones((2, 2, 2)))


def test_polygons_and_union():
    square = rle.from_polygons([[1, 1, 5, 1, 5, 5, 1, 5]], 8, 8)
    assert int(mask_utils.area(square | {"counts": square["counts"].encode()})) == 16
    empty = rle.from_polygons([], 8, 8)
    assert not rle.decode(empty).any()
    both = rle.union([square, None, rle.encode(np.eye(8, dtype=bool))], (8, 8))
    assert both.sum() == 16 + 8 - 4  # the diagonal crosses the square on 4 pixels
    as_rle = rle.from_coco_segmentation(square, 8, 8)
    assert np.array_equal(rle.decode(as_rle), rle.decode(square))
