"""Per-expression metrics in the worker, beside the masks and the ground truth (architecture.md).

Each row keeps the sums the dataset-level numbers need: J and F averaged over the expression's frames
(DAVIS definitions, the ignore mask as void) and the intersection and union summed over frames, from
which cIoU and gIoU are aggregated later by ``pipeline.metrics`` on the ``metrics`` table.
"""

import numpy as np

from ..metrics.boundary import boundary_f
from ..metrics.region import jaccard, region_counts


def expression_metrics(
    predicted: list[np.ndarray],
    targets: list[np.ndarray],
    ignores: list[np.ndarray | None],
    *,
    video: bool,
) -> dict:
    """``j``, ``f``, ``jf`` (None for images) and the summed ``intersection`` and ``union`` of one expression.

    Args:
        predicted, targets: per frame, ``(H, W)`` bool masks.
        ignores: per frame, an ``(H, W)`` bool mask of pixels to leave out, or None.
        video: whether F and J&F are defined (DAVIS-style video datasets).
    """
    if not (len(predicted) == len(targets) == len(ignores)) or not predicted:
        raise ValueError(f"need as many targets and ignore masks as predictions, got {len(predicted)}/{len(targets)}")
    counts = [region_counts(p, t, v) for p, t, v in zip(predicted, targets, ignores, strict=True)]
    j = float(np.mean([jaccard(c) for c in counts]))
    f = (
        float(np.mean([boundary_f(p, t, v) for p, t, v in zip(predicted, targets, ignores, strict=True)]))
        if video
        else None
    )
    return {
        "j": j,
        "f": f,
        "jf": (j + f) / 2 if video else None,
        "intersection": sum(c.intersection for c in counts),
        "union": sum(c.union for c in counts),
    }
