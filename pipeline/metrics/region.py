"""Per-frame region similarity J (the Jaccard index) and its intersection and union counts.

The definition is DAVIS's (davisvideochallenge/davis2017-evaluation davis2017/metrics.py ``db_eval_iou``; metrics.md
§1.1), which MeViS, VISA and HyperSeg copy unchanged: a pixel is foreground wherever the mask is non-zero, void pixels
drop out of both counts, and an empty union scores 1.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegionCounts:
    """Pixel counts of one frame (or their sum over frames).

    Attributes:
        intersection: pixels that are foreground in both masks and not void.
        union: pixels that are foreground in either mask and not void.
    """

    intersection: int
    union: int


def foreground(mask: np.ndarray) -> np.ndarray:
    """The foreground of a mask as the official code sees it: every non-zero pixel.

    Args:
        mask: ``(H, W)`` or ``(T, H, W)`` mask of any dtype (bool, 0/1, 0/255, object ids...).

    Returns:
        A bool array of the same shape; ``db_eval_iou`` does ``astype(bool)``, so 0/1, 0/255 and bool masks agree.
    """
    return np.asarray(mask).astype(bool)


def _check_shapes(prediction: np.ndarray, target: np.ndarray, void: np.ndarray | None) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} shapes differ")
    if void is not None and void.shape != target.shape:
        raise ValueError(f"void {void.shape} and target {target.shape} shapes differ")


def region_counts(prediction: np.ndarray, target: np.ndarray, void: np.ndarray | None = None) -> RegionCounts:
    """Intersection and union of one frame, void pixels excluded.

    Args:
        prediction: ``(H, W)`` predicted mask; non-zero is foreground.
        target: ``(H, W)`` ground-truth mask; non-zero is foreground.
        void: optional ``(H, W)`` mask of pixels to leave out (non-zero = void).

    Returns:
        ``RegionCounts`` with I = |S ∧ A ∧ ¬V| and U = |(S ∨ A) ∧ ¬V| as Python ints.
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    _check_shapes(prediction, target, None if void is None else np.asarray(void))
    s, a = foreground(prediction), foreground(target)
    valid = np.ones_like(s) if void is None else ~foreground(void)
    return RegionCounts(int(np.count_nonzero(s & a & valid)), int(np.count_nonzero((s | a) & valid)))


def jaccard(counts: RegionCounts) -> float:
    """J of one frame from its counts: I / U in float64, and 1 for an empty union.

    ``db_eval_iou`` divides first and then overwrites every ``np.isclose(union, 0)`` entry with 1; the counts are
    integers, so that is exactly ``union == 0`` (empty prediction and empty target, or everything void).

    Args:
        counts: the frame's ``RegionCounts``.

    Returns:
        J in [0, 1].
    """
    if counts.union == 0:
        return 1.0
    return float(np.float64(counts.intersection) / np.float64(counts.union))


def region_similarity(prediction: np.ndarray, target: np.ndarray, void: np.ndarray | None = None) -> float:
    """Per-frame region similarity J (davis2017/metrics.py ``db_eval_iou`` on one frame).

    Args:
        prediction: ``(H, W)`` predicted mask; non-zero is foreground.
        target: ``(H, W)`` ground-truth mask; non-zero is foreground.
        void: optional ``(H, W)`` void mask (non-zero = void).

    Returns:
        J in [0, 1]; 1.0 when the union is empty.
    """
    return jaccard(region_counts(prediction, target, void))


def region_similarity_frames(
    predictions: np.ndarray, targets: np.ndarray, voids: np.ndarray | None = None
) -> np.ndarray:
    """J of every frame of a clip, as ``db_eval_iou`` returns it for ``(T, H, W)`` inputs.

    Args:
        predictions: ``(T, H, W)`` predicted masks (or a list of ``(H, W)`` masks of one size).
        targets: ``(T, H, W)`` ground-truth masks.
        voids: optional ``(T, H, W)`` void masks.

    Returns:
        ``(T,)`` float64 array of per-frame J.
    """
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    voids = None if voids is None else np.asarray(voids)
    if targets.ndim != 3:
        raise ValueError(f"expected (T, H, W) masks, got shape {targets.shape}")
    _check_shapes(predictions, targets, voids)
    s, a = foreground(predictions), foreground(targets)
    valid = np.ones_like(s) if voids is None else ~foreground(voids)
    inter = np.sum(s & a & valid, axis=(-2, -1))
    union = np.sum((s | a) & valid, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1.0
    return j


__all__ = ["RegionCounts", "foreground", "jaccard", "region_counts", "region_similarity", "region_similarity_frames"]
