"""Boundary F (metrics.md §1.2): radii, disks, seg2bmap, the dilation, and every F edge case, by hand.

The golden values at the end were measured with the official ``db_eval_iou`` / ``f_measure`` (davis2017/metrics.py,
with cv2 5.0.0 and scikit-image 0.26.0) on the same deterministic masks.
"""

import numpy as np
import pytest

from pipeline.metrics import (
    BoundaryMeasure,
    boundary_f,
    boundary_f_frames,
    boundary_map,
    boundary_measure,
    dilate,
    disk,
    region_similarity,
    tolerance_radius,
)


def ellipse(h: int, w: int, cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    """Integer-exact filled ellipse."""
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 * rx * rx + (xx - cx) ** 2 * ry * ry < rx * rx * ry * ry


def stripes(h: int, w: int, a: int, b: int, m: int, k: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx * a + yy * b) % m < k


def left_columns(h: int, w: int, n: int) -> np.ndarray:
    """Columns 0..n-1 foreground: the boundary map is the single column n-1."""
    mask = np.zeros((h, w), dtype=bool)
    mask[:, :n] = True
    return mask


@pytest.mark.parametrize(
    ("shape", "radius"),
    [((480, 854), 8), ((480, 910), 9), ((360, 640), 6), ((576, 1024), 10), ((720, 1280), 12), ((1024, 1024), 12)]
    + [((1080, 1920), 18), ((1, 1), 1), ((100, 100), 2)],
)
def test_tolerance_radius(shape, radius):
    assert tolerance_radius(shape) == radius


def test_tolerance_in_pixels_when_at_least_one():
    assert tolerance_radius((480, 854), 3) == 3.0
    assert tolerance_radius((480, 854), 1) == 1.0


def test_disk_pixel_counts():
    counts = {1: 5, 2: 13, 3: 29, 4: 49, 5: 81, 6: 113, 7: 149, 8: 197, 9: 253, 10: 317}
    assert {r: int(disk(float(r)).sum()) for r in counts} == counts
    assert disk(2.0).astype(int).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]


def test_disk_of_a_non_integer_radius():
    # np.arange(-1.5, 2.5) = [-1.5, -0.5, 0.5, 1.5]: a 4x4 kernel with its 2x2 centre set.
    assert disk(1.5).astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_single_pixel_gives_a_2x2_block_towards_the_origin():
    mask = np.zeros((5, 6), dtype=np.uint8)
    mask[2, 3] = 1
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:3, 2:4] = True
    assert np.array_equal(boundary_map(mask), expected)
    corner = np.zeros((5, 6), dtype=bool)
    corner[0, 0] = True
    assert np.array_equal(boundary_map(corner), corner)


def test_bottom_right_pixel_is_never_a_boundary():
    mask = np.zeros((4, 4), dtype=bool)
    mask[3, 3] = True
    expected = np.zeros((4, 4), dtype=bool)
    expected[2, 2] = expected[3, 2] = expected[2, 3] = True  # (3, 3) itself is forced to 0
    assert np.array_equal(boundary_map(mask), expected)


def test_full_and_empty_masks_have_no_boundary():
    assert not boundary_map(np.ones((7, 9), dtype=np.uint8)).any()
    assert not boundary_map(np.zeros((7, 9), dtype=np.uint8)).any()
    assert boundary_map(left_columns(6, 8, 3)).nonzero()[1].tolist() == [2] * 6


def test_both_empty_is_one():
    empty = np.zeros((20, 30), dtype=np.uint8)
    assert boundary_measure(empty, empty) == BoundaryMeasure(1.0, 1.0, 1.0)


def test_one_side_empty_is_zero():
    empty, blob = np.zeros((20, 30), dtype=bool), ellipse(20, 30, 10, 15, 5, 8)
    assert boundary_measure(empty, blob) == BoundaryMeasure(1.0, 0.0, 0.0)
    assert boundary_measure(blob, empty) == BoundaryMeasure(0.0, 1.0, 0.0)


def test_full_frame_quirk():
    full, empty = np.ones((20, 30), dtype=bool), np.zeros((20, 30), dtype=bool)
    assert boundary_f(full, full) == 1.0
    # A full-frame mask has no boundary pixel, so it scores like an empty one: F(full, empty) = 1 while J = 0.
    assert boundary_f(full, empty) == 1.0
    assert boundary_f(empty, full) == 1.0
    assert region_similarity(full, empty) == 0.0
    assert boundary_f(full, ellipse(20, 30, 10, 15, 5, 8)) == 0.0


def test_tolerance_at_the_480x854_diagonal():
    # r = ceil(0.008 * 978.5) = 8: boundary columns 8 apart match, 9 apart do not.
    target = left_columns(480, 854, 400)
    assert boundary_f(left_columns(480, 854, 408), target) == 1.0
    assert boundary_f(left_columns(480, 854, 409), target) == 0.0
    # On a 480x910 frame r = 9, so the same 9-column gap matches.
    assert boundary_f(left_columns(480, 910, 409), left_columns(480, 910, 400)) == 1.0
    # A radius given in pixels overrides the diagonal.
    assert boundary_f(left_columns(480, 854, 409), target, bound_th=9) == 1.0


def test_tolerance_is_a_disk_not_a_square():
    # 480x854, r = 8. Single pixels give 2x2 boundary blocks. A (5, 6) shift keeps every block pixel within
    # 5² + 6² = 61 <= 64 of the other block; at (6, 6) one pixel of each block is 72 > 64 away: P = R = 3/4.
    target = np.zeros((480, 854), dtype=bool)
    target[200, 300] = True
    near, far = np.zeros_like(target), np.zeros_like(target)
    near[205, 306] = True
    far[206, 306] = True
    assert boundary_measure(near, target) == BoundaryMeasure(1.0, 1.0, 1.0)
    assert boundary_measure(far, target) == BoundaryMeasure(0.75, 0.75, 0.75)


def test_precision_and_recall_by_hand():
    # Target boundary: column 399 (480 px). Prediction: column 407 (480 px, all within 8) plus a 100x100 square far
    # away whose boundary map has 101 * 101 - 99 * 99 = 400 pixels. P = 480 / 880, R = 1, F = 12 / 17.
    target = left_columns(480, 854, 400)
    prediction = left_columns(480, 854, 408)
    prediction[100:200, 600:700] = True
    precision = 480 / 880
    expected = BoundaryMeasure(precision, 1.0, 2 * precision * 1.0 / (precision + 1.0))
    assert boundary_measure(prediction, target) == expected
    assert expected.f == pytest.approx(12 / 17, rel=1e-15)
    # Precision is measured on the prediction: swapping the masks swaps P and R.
    assert boundary_measure(target, prediction) == BoundaryMeasure(1.0, precision, expected.f)


def test_void_pixels_can_create_boundaries():
    full, empty = np.ones((20, 30), dtype=bool), np.zeros((20, 30), dtype=bool)
    void = np.zeros((20, 30), dtype=bool)
    void[8:12, 10:20] = True
    # Zeroing the void punches a hole in the full prediction: it now has a boundary, the empty target has none.
    assert boundary_measure(full, empty, void) == BoundaryMeasure(0.0, 1.0, 0.0)
    assert boundary_f(full, full, void) == 1.0


def test_value_scale_does_not_matter():
    a, b = ellipse(60, 90, 30, 40, 20, 25), ellipse(60, 90, 33, 45, 18, 22)
    f = boundary_f(a, b)
    assert 0.0 < f < 1.0
    assert boundary_f(a.astype(np.uint8) * 255, b.astype(np.uint8)) == f


def test_frames_vector():
    empty, blob = np.zeros((20, 30), dtype=bool), ellipse(20, 30, 10, 15, 5, 8)
    f = boundary_f_frames(np.stack([empty, empty, blob]), np.stack([empty, blob, blob]))
    assert f.dtype == np.float64 and f.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="frame counts"):
        boundary_f_frames([empty], [empty, empty])


def naive_dilate(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """dst(p) = OR over kernel cells k of src(p + k - anchor), pixel by pixel (cv2.dilate's definition)."""
    h, w = mask.shape
    ay, ax = footprint.shape[0] // 2, footprint.shape[1] // 2
    out = np.zeros_like(mask, dtype=bool)
    for i, j in zip(*np.nonzero(footprint), strict=True):
        dy, dx = i - ay, j - ax
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w and mask[y + dy, x + dx]:
                    out[y, x] = True
    return out


def test_dilation_equals_the_pixelwise_definition():
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = rng.integers(1, 14, size=2)
        mask = rng.random((h, w)) < rng.choice([0.05, 0.3])
        footprint = rng.random(tuple(rng.integers(1, 6, size=2))) < 0.6
        if not footprint.any():
            footprint[0, 0] = True
        assert np.array_equal(dilate(mask, footprint), naive_dilate(mask, footprint))
    for r in (1.0, 1.5, 2.0, 3.0):
        mask = rng.random((12, 15)) < 0.1
        assert np.array_equal(dilate(mask, disk(r)), naive_dilate(mask, disk(r)))


def test_dilation_with_a_zero_border_and_an_off_centre_anchor():
    mask = np.zeros((3, 4), dtype=bool)
    mask[0, 0] = True
    # 4x4 kernel with its 2x2 centre set, anchor (2, 2): offsets {-1, 0}^2, so the pixel spreads down and right.
    expected = np.zeros((3, 4), dtype=bool)
    expected[0:2, 0:2] = True
    assert np.array_equal(dilate(mask, disk(1.5)), expected)
    with pytest.raises(ValueError, match="no True cell"):
        dilate(mask, np.zeros((3, 3), dtype=bool))


def test_properties_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.random((2, 25, 33)) < rng.random()
        measure = boundary_measure(a, b)
        assert 0.0 <= measure.f <= 1.0
        swapped = boundary_measure(b, a)
        assert (swapped.precision, swapped.recall) == (measure.recall, measure.precision)
        assert boundary_f(a, a) == 1.0


# (prediction, target) masks and the official (J, F, J with void, F with void), void = stripes(h, w, 7, 11, 31, 3).
GOLDEN = {
    "ellipses_480x854": (
        lambda: (ellipse(480, 854, 240, 420, 150, 260), ellipse(480, 854, 250, 432, 140, 250)),
        (0.8796932882540401, 0.4758327820223681, 0.8797589088206056, 0.9628343470711676),
    ),
    "ellipse_vs_stripes_480x854": (
        lambda: (
            ellipse(480, 854, 200, 300, 120, 200),
            stripes(480, 854, 3, 5, 97, 40) & ellipse(480, 854, 210, 310, 140, 220),
        ),
        (0.3708996156912204, 0.29167315175097275, 0.3709787906731656, 0.920403544439756),
    ),
    "stripes_37x53": (
        lambda: (stripes(37, 53, 3, 5, 23, 9), stripes(37, 53, 5, 3, 19, 8)),
        (0.25334382376081827, 0.9990697674418605, 0.2537182852143482, 0.9987121699935608),
    ),
    "ellipses_720x1280": (
        lambda: (ellipse(720, 1280, 300, 600, 200, 330), ellipse(720, 1280, 320, 640, 190, 300)),
        (0.795602863251836, 0.24162273664909467, 0.795643201572688, 0.9234101828217245),
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_values_of_the_official_code(name):
    build, expected = GOLDEN[name]
    prediction, target = build()
    void = stripes(*target.shape, 7, 11, 31, 3)
    got = (
        region_similarity(prediction, target),
        boundary_f(prediction, target),
        region_similarity(prediction, target, void),
        boundary_f(prediction, target, void),
    )
    assert got == expected
