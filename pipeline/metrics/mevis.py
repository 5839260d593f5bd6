"""Per-expression J and F of a video expression, and MeViS's dataset numbers.

Source: henghuiding/MeViS tools/eval_mevis.py (``eval_queue`` and ``__main__``) and VISA's copy
(cilinyan/VISA tools/eval_mevis.py); metrics.md §3.1. Per expression, j and f are the plain means of the per-frame
DAVIS J and F (metrics.md §1.1-1.2) over **all** frames: no first/last-frame exclusion, no void, and a frame where
both masks are empty counts 1. The dataset's J and F are means over expressions, J&F = (J + F) / 2.

The same per-expression score serves Ref-YouTube-VOS (its server is assumed to follow MeViS; metrics.md §3.2 marks
that unverified) and VISA's Ref-DAVIS17 evaluation (tools/eval_davis17.py, metrics.md §3.3).

The ground truth of an expression is the union of its objects: MeViS sums the decoded object masks in uint8, and J
and F only look at non-zero pixels, so a bool union gives the same numbers.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from .boundary import BOUND_TH, boundary_f
from .region import jaccard, region_counts


@dataclass(frozen=True)
class ExpressionScore:
    """The metrics row of one video expression (the ``metrics`` table's j, f, intersection, union, frames).

    Attributes:
        j: mean over frames of the per-frame J.
        f: mean over frames of the per-frame F.
        intersection: sum over frames of the per-frame intersections (void excluded), for pooled IoUs.
        union: sum over frames of the per-frame unions (void excluded).
        frames: number of frames scored.
    """

    j: float
    f: float
    intersection: int
    union: int
    frames: int

    @property
    def jf(self) -> float:
        """(j + f) / 2."""
        return (self.j + self.f) / 2

    @classmethod
    def zero(cls, frames: int = 0) -> "ExpressionScore":
        """The score both MeViS and VISA give an expression whose prediction folder is missing: [0, 0]."""
        return cls(0.0, 0.0, 0, 0, frames)

    @classmethod
    def from_row(cls, row: Mapping) -> "ExpressionScore":
        """Rebuild a score from a table row holding at least this class's field names."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})


def frame_scores(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    voids: Sequence[np.ndarray | None] | None = None,
    bound_th: float = BOUND_TH,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per-frame J and F of a clip, with its summed intersection and union.

    Args:
        predictions: T predicted masks, each ``(H, W)``; non-zero is foreground (bool, 0/1 and 0/255 all agree).
        targets: T ground-truth masks, each ``(H, W)``; non-zero is foreground.
        voids: optional T void masks (or None entries for frames without one). The MeViS and ReVOS scripts use none;
            pass voids only for DAVIS-style scoring.
        bound_th: boundary tolerance (metrics.md §1.2).

    Returns:
        ``(j, f, intersection, union)``: ``(T,)`` float64 arrays and the two summed counts as ints.
    """
    if len(predictions) != len(targets) or (voids is not None and len(voids) != len(targets)):
        raise ValueError(f"frame counts differ: {len(predictions)} predictions, {len(targets)} targets")
    j, f = np.zeros(len(targets)), np.zeros(len(targets))
    intersection = union = 0
    for t, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        void = None if voids is None else voids[t]
        counts = region_counts(prediction, target, void)
        j[t] = jaccard(counts)
        f[t] = boundary_f(prediction, target, void, bound_th)
        intersection += counts.intersection
        union += counts.union
    return j, f, intersection, union


def score_expression(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    voids: Sequence[np.ndarray | None] | None = None,
    bound_th: float = BOUND_TH,
) -> ExpressionScore:
    """j, f and pooled counts of one video expression (MeViS tools/eval_mevis.py ``eval_queue``).

    Args:
        predictions: T predicted masks, each ``(H, W)``, one per frame of ``vid["frames"]``.
        targets: T ground-truth masks (the union of the expression's objects; empty for a no-target expression).
        voids: optional T void masks (None for MeViS, ReVOS and Ref-YouTube-VOS).
        bound_th: boundary tolerance.

    Returns:
        ``ExpressionScore`` with j = ``db_eval_iou(gt, pred).mean()`` and f = ``db_eval_boundary(gt, pred).mean()``.
    """
    if len(targets) == 0:
        raise ValueError("an expression needs at least one frame")
    j, f, intersection, union = frame_scores(predictions, targets, voids, bound_th)
    # ndarray.mean, as the official `.mean()` (pairwise summation), so the float64 result is bit-identical.
    return ExpressionScore(float(j.mean()), float(f.mean()), intersection, union, len(targets))


@dataclass(frozen=True)
class MevisSummary:
    """Dataset numbers of MeViS (fractions) or of VISA's copy (percent, 2 decimals).

    Attributes:
        j: mean over expressions of j.
        f: mean over expressions of f.
        jf: (J + F) / 2.
        expressions: number of expressions averaged.
    """

    j: float
    f: float
    jf: float
    expressions: int


def summarize_mevis(scores: Sequence[ExpressionScore], *, percent: bool = False) -> MevisSummary:
    """J, F and J&F over expressions (MeViS tools/eval_mevis.py ``__main__``).

    Args:
        scores: one ``ExpressionScore`` per expression. MeViS drops an expression whose worker crashed (it is missing
            from ``output_dict``) and scores a missing prediction folder as ``ExpressionScore.zero()``; the caller
            decides which rows to pass.
        percent: False gives MeViS's raw fractions; True gives VISA's ``round(100 * float(x), 2)`` (Python's
            correctly rounded ``round``, applied only to the final numbers).

    Returns:
        ``MevisSummary``.
    """
    if not scores:
        raise ValueError("no expressions to summarize")
    j_mean = np.mean([s.j for s in scores])
    f_mean = np.mean([s.f for s in scores])
    jf = (j_mean + f_mean) / 2
    if percent:
        return MevisSummary(
            round(100 * float(j_mean), 2), round(100 * float(f_mean), 2), round(100 * float(jf), 2), len(scores)
        )
    return MevisSummary(float(j_mean), float(f_mean), float(jf), len(scores))


__all__ = ["ExpressionScore", "MevisSummary", "frame_scores", "score_expression", "summarize_mevis"]
