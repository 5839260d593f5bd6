"""Which predicted masks become labels: thresholds on the quality signals and overlap removal, as SA-1B's data
engine filtered its automatic masks (predicted quality, stability, size, then non-maximum suppression).

Applied at export time to the stored ``predictions``: no model is re-run. A rejected mask keeps every reason it
failed, for the QC sheet.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class Filters:
    """Thresholds; a mask is accepted when it passes all of them.

    ``min_area`` is 1 by default: an empty mask is never a label. ``min_stability`` above 0 also rejects masks
    whose stability is undefined (NaN, no pixel above logit -1). ``dedup_iou``: of two masks on one frame whose
    IoU is above it, whatever their prompts, the lower-scored one is rejected (greedy by score, ties by order).
    """

    min_score: float = 0.0
    min_stability: float = 0.0
    min_area: int = 1
    max_area_fraction: float = 1.0
    dedup_iou: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_score", "min_stability", "max_area_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if self.dedup_iou is not None and not 0.0 <= self.dedup_iou < 1.0:
            raise ValueError(f"dedup_iou must be in [0, 1), got {self.dedup_iou}")

    def reasons(self, score: float, stability: float, area: int, area_fraction: float) -> list[str]:
        """Why one mask fails the thresholds (empty: it passes)."""
        out = []
        if score < self.min_score:
            out.append(f"score {score:.3f} < {self.min_score:g}")
        if self.min_stability > 0 and not (stability >= self.min_stability):  # NaN fails too
            shown = "undefined" if math.isnan(stability) else f"{stability:.3f}"
            out.append(f"stability {shown} < {self.min_stability:g}")
        if area < self.min_area:
            out.append(f"area {area} < {self.min_area}")
        if area_fraction > self.max_area_fraction:
            out.append(f"area fraction {area_fraction:.3f} > {self.max_area_fraction:g}")
        return out


def duplicates(rles: Sequence[dict], scores: Sequence[float], threshold: float) -> dict[int, tuple[int, float]]:
    """Greedy removal over one frame's masks: index -> (the kept index it duplicates, their IoU).

    Masks are visited by decreasing score (ties: lower index first); one is removed when its IoU with an
    already kept mask is above ``threshold``. ``rles`` are COCO compressed RLEs of one size (str counts).
    """
    order = sorted(range(len(rles)), key=lambda i: (-scores[i], i))
    coded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    kept: list[int] = []
    removed: dict[int, tuple[int, float]] = {}
    for i in order:
        if kept:
            ious = mask_utils.iou([coded[i]], [coded[k] for k in kept], [0] * len(kept))[0]
            j = int(ious.argmax())
            if ious[j] > threshold:
                removed[i] = (kept[j], float(ious[j]))
                continue
        kept.append(i)
    return removed
