"""ReVOS as VISA evaluates it: per-expression J, F, A and R, rounded, then referring / reasoning / overall.

Source: cilinyan/VISA tools/eval_revos.py (``eval_queue``, ``__main__``) and tools/metrics.py
(``get_r2vos_accuracy``, ``get_r2vos_robustness``); HyperSeg's eval_tools/eval_revos.py is the same script
(metrics.md §2). Per frame t, with uint8 arrays as the script builds them:

- G_t: the sum (``+=`` in uint8) of the expression's decoded object masks, so overlapping objects give 2;
- FG_t: the video's foreground mask (the OR of every object any expression names), uint8 0/1;
- P_t: the prediction PNG read as grayscale: **0/255** for VISA and HyperSeg.

j and f are the DAVIS J and F (non-zero = foreground, so the value scale does not matter). A and R compare raw
values, so they depend on it: A_t = mean(G_t == P_t), and R_t = max(1 - neg_t / (|FG_t| + 1e-6), 0) with
neg_t = sum((1 - G_t) * P_t) computed element-wise in uint8 (wrapping modulo 256). With 0/255 predictions a false
positive adds 255 to neg and a predicted pixel where G = 2 adds 255 * 255 mod 256 = 1. ``foreground_value`` names the
scale: 255 reproduces VISA's and HyperSeg's reported A and R; 1 is the 0/1 variant, a different metric.
"""

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from .boundary import BOUND_TH
from .mevis import frame_scores

# VISA tools/eval_revos.py: is_referring = type_id 0, is_reason = 1 (type_id 2, "is_nan", is never scored).
REFERRING = "referring"
REASONING = "reasoning"
# The foreground value of the prediction PNGs VISA (train_ds.rvos_validate, XMem) and HyperSeg write.
OFFICIAL_FOREGROUND_VALUE = 255


@dataclass(frozen=True)
class RevosScore:
    """The per-expression result of ``eval_queue``: [j, f, a, r] plus pooled counts for the metrics table.

    Attributes:
        j: mean over frames of J.
        f: mean over frames of F.
        a: mean over frames of the pixel accuracy A_t.
        r: mean over frames of the robustness R_t.
        intersection: summed per-frame intersections (non-zero convention).
        union: summed per-frame unions.
        frames: frames scored.
    """

    j: float
    f: float
    a: float
    r: float
    intersection: int
    union: int
    frames: int

    @classmethod
    def failed(cls, frames: int = 0) -> "RevosScore":
        """What the script records for a missing video folder or *any* exception (missing frame, size mismatch):
        [0, 0, 0, 0]."""
        return cls(0.0, 0.0, 0.0, 0.0, 0, 0, frames)

    @classmethod
    def from_row(cls, row: Mapping) -> "RevosScore":
        """Rebuild a score from a table row holding at least this class's field names."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})


def sum_object_masks(masks: Sequence[np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """The ground truth of one frame as ``eval_queue`` builds it: ``gt += decode(rle)`` in uint8, nulls skipped.

    Args:
        masks: the decoded ``(H, W)`` masks of the expression's objects on this frame (0/1), None where absent.
        shape: ``(H, W)`` of the frame.

    Returns:
        ``(H, W)`` uint8: 0 background, 1 one object, 2 where two overlap (wrapping past 255, like the script).
    """
    gt = np.zeros(shape, dtype=np.uint8)
    for mask in masks:
        if mask is not None:
            gt += np.asarray(mask).astype(np.uint8)
    return gt


def official_prediction(mask: np.ndarray, foreground_value: int | None = OFFICIAL_FOREGROUND_VALUE) -> np.ndarray:
    """A predicted mask as the script reads it back from the PNG: uint8 0/``foreground_value``.

    Args:
        mask: ``(H, W)`` predicted mask; non-zero is foreground.
        foreground_value: the PNG's foreground value (255 for VISA and HyperSeg, 1 for the 0/1 variant), or None if
            ``mask`` already holds the grayscale values (e.g. read with ``cv2.IMREAD_GRAYSCALE``).

    Returns:
        ``(H, W)`` uint8.
    """
    mask = np.asarray(mask)
    if foreground_value is None:
        if mask.dtype != np.uint8:
            raise ValueError(f"raw predictions must be uint8 grayscale, got {mask.dtype}")
        return mask
    if not 0 < foreground_value < 256:
        raise ValueError(f"foreground_value must be in 1..255, got {foreground_value}")
    return (mask != 0).astype(np.uint8) * np.uint8(foreground_value)


def accuracy(prediction: np.ndarray, target: np.ndarray) -> float:
    """A_t: the fraction of pixels whose raw values agree (VISA tools/metrics.py ``get_r2vos_accuracy``).

    Args:
        prediction: ``(H, W)`` uint8 prediction as read (0/255 for VISA).
        target: ``(H, W)`` uint8 summed ground truth.

    Returns:
        ``mean(target == prediction)``; with 0/255 predictions foreground never agrees, so this is the fraction of
        true-negative pixels.
    """
    return float(np.mean(target == prediction))


def robustness(prediction: np.ndarray, target: np.ndarray, foreground: np.ndarray) -> float:
    """R_t = max(1 - neg / (pos + 1e-6), 0) (VISA tools/metrics.py ``get_r2vos_robustness``).

    Args:
        prediction: ``(H, W)`` uint8 prediction as read (0/255 for VISA).
        target: ``(H, W)`` uint8 summed ground truth.
        foreground: ``(H, W)`` uint8 0/1 foreground of the video's frame.

    Returns:
        R_t in [0, 1]. neg = sum((1 - G) * P) with both operations in uint8 (``1 - 2`` is 255, ``255 * 255`` is 1),
        summed exactly; pos = sum(FG). Empty FG: 1 if neg = 0, else 0.
    """
    negative = np.multiply(np.subtract(np.uint8(1), target, dtype=np.uint8), prediction, dtype=np.uint8)
    neg = int(negative.sum(dtype=np.uint64))
    pos = int(foreground.sum(dtype=np.uint64))
    return max(1 - neg / (pos + 1e-6), 0.0)


def score_revos_expression(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    foregrounds: Sequence[np.ndarray],
    *,
    foreground_value: int | None = OFFICIAL_FOREGROUND_VALUE,
    bound_th: float = BOUND_TH,
) -> RevosScore:
    """j, f, a and r of one ReVOS expression (VISA tools/eval_revos.py ``eval_queue``).

    Args:
        predictions: T predicted ``(H, W)`` masks, one per frame of ``vid["frames"]``; non-zero is foreground
            (or the raw grayscale PNG values when ``foreground_value`` is None).
        targets: T ``(H, W)`` ground truths; pass ``sum_object_masks`` of the objects for the official A and R
            (a bool union is cast to 0/1 and loses the value 2 of overlaps). Empty for a no-target expression.
        foregrounds: T ``(H, W)`` foreground masks of the video (``mask_dict_foreground.json``), 0/1.
        foreground_value: the prediction PNGs' foreground value (see the module docstring).
        bound_th: boundary tolerance.

    Returns:
        ``RevosScore``. Frames whose shapes differ raise ValueError; the script scores the whole expression
        ``[0, 0, 0, 0]`` then, which is ``RevosScore.failed(frames)``.
    """
    if not len(predictions) == len(targets) == len(foregrounds) or len(targets) == 0:
        raise ValueError(
            f"need one prediction, target and foreground per frame, got {len(predictions)}, {len(targets)}, "
            f"{len(foregrounds)}"
        )
    preds = [official_prediction(p, foreground_value) for p in predictions]
    gts = [np.asarray(t).astype(np.uint8) for t in targets]
    fgs = [np.asarray(m).astype(np.uint8) for m in foregrounds]
    for t, (p, g, m) in enumerate(zip(preds, gts, fgs, strict=True)):
        if not p.shape == g.shape == m.shape:
            raise ValueError(f"frame {t}: prediction {p.shape}, target {g.shape} and foreground {m.shape} differ")
    j, f, intersection, union = frame_scores(preds, gts, None, bound_th)
    a = np.array([accuracy(p, g) for p, g in zip(preds, gts, strict=True)])
    r = np.array([robustness(p, g, m) for p, g, m in zip(preds, gts, fgs, strict=True)])
    return RevosScore(
        float(j.mean()), float(f.mean()), float(a.mean()), float(r.mean()), intersection, union, len(gts)
    )


@dataclass(frozen=True)
class RevosPercent:
    """One row of ``revos_valid.csv``: the expression's numbers in percent, rounded to 2 decimals.

    Attributes:
        j, f, jf, a, r: ``round(100 * x, 2)``, with jf = ``round(100 * (j + f) / 2, 2)``.
    """

    j: float
    f: float
    jf: float
    a: float
    r: float


def _percent(value: float) -> float:
    # eval_revos.py rounds `round(100 * j, 2)` with j a np.float64, so this is NumPy's rounding (scale by 100, rint,
    # unscale), which differs from Python's correctly rounded round() on some ties (e.g. 69.175 -> 69.18, not 69.17).
    return float(round(np.float64(value), 2))


def percent_row(score: RevosScore) -> RevosPercent:
    """The rounded per-expression row (``__main__`` of eval_revos.py).

    Args:
        score: the expression's ``RevosScore``.

    Returns:
        ``RevosPercent``.
    """
    j, f = score.j, score.f
    return RevosPercent(
        _percent(100 * j),
        _percent(100 * f),
        _percent(100 * (j + f) / 2),
        _percent(100 * score.a),
        _percent(100 * score.r),
    )


@dataclass(frozen=True)
class RevosCategory:
    """Numbers of one category, in percent (not rounded again).

    Attributes:
        j, f, a, r: means over the category's expressions of the *rounded* per-expression values.
        jf: (j + f) / 2, not the mean of the per-expression JF.
        expressions: number of expressions averaged.
    """

    j: float
    f: float
    a: float
    r: float
    jf: float
    expressions: int


@dataclass(frozen=True)
class RevosSummary:
    """``revos_valid.json``: referring, reason and overall.

    Attributes:
        referring: expressions of type 0.
        reasoning: expressions of type 1 (``"reason"`` in the json).
        overall: the macro average (referring + reasoning) / 2 of each number, not a pooled mean.
    """

    referring: RevosCategory
    reasoning: RevosCategory
    overall: RevosCategory


def _category(rows: list[RevosPercent]) -> RevosCategory:
    # np.array([...]).mean() as the script does; an empty category is NaN there too (the warning is filtered).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        j, f, a, r = (float(np.array([getattr(row, k) for row in rows], dtype=np.float64).mean()) for k in "jfar")
    return RevosCategory(j, f, a, r, (j + f) / 2, len(rows))


def summarize_revos(scores: Sequence[RevosScore], kinds: Sequence[str]) -> RevosSummary:
    """Referring, reasoning and overall J, F, A, R and J&F, in percent (``__main__`` of eval_revos.py).

    R is averaged over every scored expression of its category, like J and F; it is not restricted to no-target
    expressions (metrics.md §2.3).

    Args:
        scores: one ``RevosScore`` per expression, in the order to average them (the script's order is that of its
            worker pool's completions; only the last bits of a mean can depend on it).
        kinds: the expression kinds, aligned with ``scores``: ``"referring"`` (type 0) and ``"reasoning"`` (type 1)
            are scored; any other kind (type 2, "no-target") is left out of every number, as the script does.

    Returns:
        ``RevosSummary``; a category without expressions has NaN numbers, and so does ``overall`` then.
    """
    if len(scores) != len(kinds):
        raise ValueError(f"{len(scores)} scores but {len(kinds)} kinds")
    rows = [percent_row(s) for s in scores]
    referring = _category([row for row, kind in zip(rows, kinds, strict=True) if kind == REFERRING])
    reasoning = _category([row for row, kind in zip(rows, kinds, strict=True) if kind == REASONING])
    overall = RevosCategory(
        (referring.j + reasoning.j) / 2,
        (referring.f + reasoning.f) / 2,
        (referring.a + reasoning.a) / 2,
        (referring.r + reasoning.r) / 2,
        (referring.jf + reasoning.jf) / 2,
        referring.expressions + reasoning.expressions,
    )
    return RevosSummary(referring, reasoning, overall)


__all__ = [
    "OFFICIAL_FOREGROUND_VALUE",
    "REASONING",
    "REFERRING",
    "RevosCategory",
    "RevosPercent",
    "RevosScore",
    "RevosSummary",
    "accuracy",
    "official_prediction",
    "percent_row",
    "robustness",
    "score_revos_expression",
    "sum_object_masks",
    "summarize_revos",
]
