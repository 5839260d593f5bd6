"""Per-expression metrics in the worker, beside the masks and the ground truth (architecture.md).

Each dataset is scored with its official convention (``pipeline.metrics``; metrics.md): ReVOS as VISA
(J, F, A, R against the summed object masks and the video's foreground), the other video sets as MeViS
(J and F over every frame, the ignore mask as void), images as LISA (intersection and union with ignore
label 255). Rows keep the intersection and union sums, so dataset-level numbers (cIoU, gIoU, J&F per
split, A and R) are aggregated later from the ``metrics`` table.
"""

import numpy as np

from ..data import Expression, Sample
from ..metrics.mevis import score_expression
from ..metrics.refer import IGNORE_INDEX, score_pair
from ..metrics.revos import score_revos_expression, sum_object_masks

REVOS_DATASETS = ("revos",)


def uses_foreground(sample: Sample) -> bool:
    """Whether the sample's scoring needs the video foreground (ReVOS's robustness R)."""
    return sample.meta["source"]["dataset"] in REVOS_DATASETS


def video_foregrounds(sample: Sample, frames: int) -> list[np.ndarray]:
    """Per frame, the OR of every object any expression of the video names, uint8 0/1 (``mask_dict_foreground``).

    The same for every expression of the video: compute it once per sample.
    """
    objects = sample.meta["gt"]["objects"]
    every = sorted({o for e in sample.expressions for o in e.object_ids if o in objects})
    return [
        sum_object_masks([sample.mask(o, t) for o in every], sample.size).astype(bool).astype(np.uint8)
        for t in range(frames)
    ]


def expression_metrics(
    sample: Sample,
    expression: Expression,
    predicted: list[np.ndarray],
    foregrounds: list[np.ndarray] | None = None,
) -> dict:
    """The metric columns of one expression's row: j, f, jf, a, r, convention, intersection, union.

    Args:
        sample: the sample, with ground truth.
        expression: one of its expressions.
        predicted: per frame, the ``(H, W)`` bool predicted mask.
        foregrounds: ``video_foregrounds(sample, frames)`` when ``uses_foreground(sample)``, computed once for
            all the sample's expressions (computed here if not given).
    """
    frames = len(predicted)
    if uses_foreground(sample):
        targets = [
            sum_object_masks([sample.mask(o, t) for o in expression.object_ids], sample.size) for t in range(frames)
        ]
        if foregrounds is None:
            foregrounds = video_foregrounds(sample, frames)
        s = score_revos_expression(predicted, targets, foregrounds)
        return {
            "j": s.j,
            "f": s.f,
            "jf": (s.j + s.f) / 2,
            "a": s.a,
            "r": s.r,
            "convention": "revos",
            "intersection": s.intersection,
            "union": s.union,
        }
    if sample.is_video:
        targets = [sample.target(expression, t) for t in range(frames)]
        s = score_expression(predicted, targets, [sample.ignore(t) for t in range(frames)])
        return {
            "j": s.j,
            "f": s.f,
            "jf": s.jf,
            "a": None,
            "r": None,
            "convention": "mevis",
            "intersection": s.intersection,
            "union": s.union,
        }
    target = sample.target(expression, 0).astype(np.uint8)
    ignore = sample.ignore(0)
    if ignore is not None:
        target[ignore] = IGNORE_INDEX
    pair = score_pair(predicted[0], target)
    return {
        "j": pair.iou,
        "f": None,
        "jf": None,
        "a": None,
        "r": None,
        "convention": "refer",
        "intersection": pair.intersection,
        "union": pair.union,
    }
