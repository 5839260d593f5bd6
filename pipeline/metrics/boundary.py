"""Per-frame boundary measure F, exactly as DAVIS computes it, in numpy alone.

Source: davisvideochallenge/davis2017-evaluation davis2017/metrics.py (``db_eval_boundary``, ``f_measure``,
``_seg2bmap``), copied unchanged by MeViS, VISA and HyperSeg (metrics.md §1.2). The official code dilates with
``cv2.dilate`` and a ``skimage.morphology.disk`` footprint; both are re-implemented here:

- ``disk(r)``: the offsets L = -r..r (``np.arange``, so a float radius works) on both axes with X² + Y² <= r²
  (scikit-image ``disk`` with its default ``strict_radius=True``).
- ``dilate``: ``cv2.dilate`` on uint8 with that kernel, one iteration, default anchor (the kernel's centre,
  ``ksize // 2``) and default border (pixels outside the image never contribute): a binary dilation with a zero
  border, dst(p) = OR over kernel cells k of src(p + k - anchor).

The dilation is done row run by row run (a disk is a stack of horizontal runs): one windowed OR along x per distinct
run, from a cumulative sum, then one shifted OR along y per kernel row. That is the same set operation as the
official per-pixel maximum, so the result is bit-identical, at a few full-frame passes per frame.
"""

from dataclasses import dataclass

import numpy as np

from .region import foreground

# davis2017/metrics.py db_eval_boundary: the default tolerance, a fraction of the frame diagonal.
BOUND_TH = 0.008


@dataclass(frozen=True)
class BoundaryMeasure:
    """Boundary precision, recall and F of one frame.

    Attributes:
        precision: predicted boundary pixels within the tolerance of a ground-truth boundary pixel, over all
            predicted boundary pixels (1 when the prediction has no boundary).
        recall: ground-truth boundary pixels within the tolerance of a predicted one, over all ground-truth boundary
            pixels (1 when the ground truth has no boundary but the prediction has, 0 the other way round).
        f: 2PR / (P + R), or 0 when P + R = 0.
    """

    precision: float
    recall: float
    f: float


def tolerance_radius(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> float:
    """Radius of the matching tolerance, in pixels, for a frame of ``shape``.

    ``f_measure``: ``bound_th`` itself if it is >= 1, else ``np.ceil(bound_th * np.linalg.norm(shape))``; the
    diagonal is that of the frame being scored (480x854 -> 8, 720x1280 -> 12, 1x1 -> 1).

    Args:
        shape: ``(H, W)`` of the frame.
        bound_th: a fraction of the diagonal (< 1) or a radius in pixels (>= 1).

    Returns:
        The radius as a float, as the official code passes it to ``disk``.
    """
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm(shape)))


def disk(radius: float) -> np.ndarray:
    """The disk footprint of ``skimage.morphology.disk(radius)`` (``strict_radius=True``).

    Args:
        radius: radius in pixels; a float is used as is (``np.arange(-radius, radius + 1)``).

    Returns:
        A square bool array of side ``len(np.arange(-radius, radius + 1))``; 5 pixels for r = 1, 197 for r = 8.
    """
    offsets = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(offsets, offsets)
    return (x**2 + y**2) <= radius**2


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries of a mask, offset half a pixel towards the origin (davis2017 ``_seg2bmap``).

    A pixel is on the boundary if it differs from its east, south or south-east neighbour (0 outside the image);
    on the last row only the east neighbour counts, on the last column only the south one, and the bottom-right pixel
    is never a boundary. So a mask covering the whole frame has no boundary at all.

    Args:
        mask: ``(H, W)`` mask; non-zero is foreground.

    Returns:
        ``(H, W)`` bool boundary map.
    """
    seg = foreground(mask)
    if seg.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {seg.shape}")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    # The official line is `seg ^ e | seg ^ s | seg ^ se`: `^` binds tighter than `|` in Python.
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _row_runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(start, stop)`` column indices of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], row, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def dilate(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation with a zero border, equal to ``cv2.dilate(mask.astype(uint8), footprint.astype(uint8))``.

    Args:
        mask: ``(H, W)`` bool (or 0/1) image.
        footprint: ``(kh, kw)`` bool kernel with at least one True cell; its anchor is ``(kh // 2, kw // 2)`` as in
            OpenCV. (An all-zero kernel, which OpenCV treats specially, cannot come from ``disk``; it is refused.)

    Returns:
        ``(H, W)`` bool: dst(y, x) = OR over kernel cells (i, j) of mask(y + i - kh // 2, x + j - kw // 2).
    """
    src = foreground(mask)
    kernel = foreground(footprint)
    if not kernel.any():
        raise ValueError("the dilation footprint has no True cell")
    out = np.zeros_like(src)
    rows, cols = np.flatnonzero(src.any(axis=1)), np.flatnonzero(src.any(axis=0))
    if rows.size == 0:
        return out
    # Only pixels within the kernel's reach of the foreground's bounding box can be set: work on that crop.
    (kh, kw), (ay, ax) = kernel.shape, (kernel.shape[0] // 2, kernel.shape[1] // 2)
    reach_y, reach_x = max(ay, kh - 1 - ay), max(ax, kw - 1 - ax)
    y0, y1 = max(rows[0] - reach_y, 0), min(rows[-1] + reach_y + 1, src.shape[0])
    x0, x1 = max(cols[0] - reach_x, 0), min(cols[-1] + reach_x + 1, src.shape[1])
    out[y0:y1, x0:x1] = _dilate_full(src[y0:y1, x0:x1], kernel)
    return out


def _dilate_full(src: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``dilate`` on a whole image: one windowed OR along x per distinct kernel-row run, then shifted ORs along y."""
    h, w = src.shape
    ay, ax = kernel.shape[0] // 2, kernel.shape[1] // 2
    pad = kernel.shape[1]
    # cumsum[:, pad + k] = foreground pixels in columns [0, k) of each row, for k in -pad..w + pad (clamped).
    cumsum = np.zeros((h, w + 1 + 2 * pad), dtype=np.int32)
    np.cumsum(src, axis=1, dtype=np.int32, out=cumsum[:, pad + 1 : pad + 1 + w])
    cumsum[:, pad + 1 + w :] = cumsum[:, pad + w : pad + w + 1]
    out = np.zeros_like(src)
    horizontal: dict[tuple[int, int], np.ndarray] = {}
    for i, row in enumerate(kernel):
        dy = i - ay
        if abs(dy) >= h:
            continue
        for start, stop in _row_runs(row):
            lo, hi = start - ax, stop - ax
            if (lo, hi) not in horizontal:
                # Any foreground in columns [x + lo, x + hi] (clipped to the image): a difference of two cumsums.
                upper = cumsum[:, pad + hi + 1 : pad + hi + 1 + w]
                lower = cumsum[:, pad + lo : pad + lo + w]
                horizontal[lo, hi] = upper > lower
            shifted = horizontal[lo, hi]
            # out[y] |= shifted[y + dy] wherever y + dy is inside the image.
            if dy >= 0:
                out[: h - dy] |= shifted[dy:]
            else:
                out[-dy:] |= shifted[: h + dy]
    return out


def boundary_measure(
    prediction: np.ndarray, target: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> BoundaryMeasure:
    """Boundary precision, recall and F of one frame (davis2017/metrics.py ``f_measure``).

    ``db_eval_boundary(annotation, segmentation)`` calls ``f_measure(segmentation, annotation)``: precision is
    measured on the prediction's boundary, recall on the ground truth's. Void pixels are zeroed in both masks before
    the boundaries are taken, so the edge of a void region can become a boundary.

    Args:
        prediction: ``(H, W)`` predicted mask; non-zero is foreground.
        target: ``(H, W)`` ground-truth mask; non-zero is foreground.
        void: optional ``(H, W)`` void mask (non-zero = void).
        bound_th: tolerance, a fraction of the frame diagonal (< 1) or pixels (>= 1).

    Returns:
        ``BoundaryMeasure``; both masks empty gives P = R = F = 1, one empty and the other not gives F = 0, and a
        full-frame mask has no boundary (so F(full, empty) = 1).
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {prediction.shape} and {target.shape}")
    valid = np.ones(target.shape, dtype=bool) if void is None else ~foreground(void)
    if valid.shape != target.shape:
        raise ValueError(f"void {valid.shape} and target {target.shape} shapes differ")
    radius = tolerance_radius(prediction.shape, bound_th)
    pred_boundary = boundary_map(foreground(prediction) & valid)
    gt_boundary = boundary_map(foreground(target) & valid)
    n_pred, n_gt = int(np.count_nonzero(pred_boundary)), int(np.count_nonzero(gt_boundary))
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        footprint = disk(radius)
        pred_dilated = dilate(pred_boundary, footprint)
        gt_dilated = dilate(gt_boundary, footprint)
        precision = float(np.count_nonzero(pred_boundary & gt_dilated) / float(n_pred))
        recall = float(np.count_nonzero(gt_boundary & pred_dilated) / float(n_gt))
    # Same operation order as f_measure: 2 * precision * recall / (precision + recall).
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return BoundaryMeasure(precision, recall, f)


def boundary_f(
    prediction: np.ndarray, target: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> float:
    """Per-frame boundary F (``db_eval_boundary`` on one frame).

    Args:
        prediction: ``(H, W)`` predicted mask; non-zero is foreground.
        target: ``(H, W)`` ground-truth mask; non-zero is foreground.
        void: optional ``(H, W)`` void mask.
        bound_th: tolerance, a fraction of the frame diagonal (< 1) or pixels (>= 1).

    Returns:
        F in [0, 1].
    """
    return boundary_measure(prediction, target, void, bound_th).f


def boundary_f_frames(
    predictions: np.ndarray, targets: np.ndarray, voids: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> np.ndarray:
    """F of every frame of a clip, as ``db_eval_boundary`` returns it for ``(T, H, W)`` inputs.

    Args:
        predictions: ``(T, H, W)`` predicted masks (or a list of ``(H, W)`` masks).
        targets: ``(T, H, W)`` ground-truth masks.
        voids: optional ``(T, H, W)`` void masks.
        bound_th: tolerance, a fraction of each frame's diagonal (< 1) or pixels (>= 1).

    Returns:
        ``(T,)`` float64 array of per-frame F.
    """
    if len(predictions) != len(targets) or (voids is not None and len(voids) != len(targets)):
        raise ValueError(f"frame counts differ: {len(predictions)} predictions, {len(targets)} targets")
    return np.array(
        [
            boundary_f(p, t, None if voids is None else voids[i], bound_th)
            for i, (p, t) in enumerate(zip(predictions, targets, strict=True))
        ],
        dtype=np.float64,
    )


__all__ = [
    "BOUND_TH",
    "BoundaryMeasure",
    "boundary_f",
    "boundary_f_frames",
    "boundary_map",
    "boundary_measure",
    "dilate",
    "disk",
    "tolerance_radius",
]
