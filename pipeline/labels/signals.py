"""Per-mask and per-track quality signals, computed in the worker from the masks it already has.

The model's own signals (``seg_score``, ``mask_score``, ``stability``) come from the logits in
``pipeline.model.parts.postprocess``; these are the mask's geometry and, for a video, how its track behaves.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics.region import region_similarity


@dataclass(frozen=True)
class Geometry:
    area: int
    area_fraction: float
    bbox: tuple[int, int, int, int]  # x, y, width, height (COCO); zeros for an empty mask


def geometry(mask: np.ndarray) -> Geometry:
    """Area, area fraction and the xywh bounding box of an ``(H, W)`` bool mask."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (height, width), got shape {mask.shape}")
    area = int(np.count_nonzero(mask))
    if area == 0:
        return Geometry(0, 0.0, (0, 0, 0, 0))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x, y = int(cols[0]), int(rows[0])
    bbox = (x, y, int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y)
    return Geometry(area, area / mask.size, bbox)


@dataclass(frozen=True)
class Track:
    frames: int
    present_fraction: float  # frames with a non-empty mask / frames
    temporal_iou: float  # mean J of consecutive frames' masks (two empty count 1); NaN for a single frame


def track(masks: Sequence[np.ndarray]) -> Track:
    """The summary of one expression's masks over a video's frames, in frame order."""
    if not masks:
        raise ValueError("a track needs at least one frame")
    present = sum(bool(m.any()) for m in masks) / len(masks)
    pairs = [region_similarity(a, b) for a, b in zip(masks, masks[1:], strict=False)]
    return Track(len(masks), present, float(np.mean(pairs)) if pairs else float("nan"))
