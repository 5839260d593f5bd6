"""Evaluation metrics, equal to the official evaluation code (shared/docs/metrics.md): numpy in, numbers out.

- ``region``: per-frame J and intersection/union (DAVIS ``db_eval_iou``).
- ``boundary``: per-frame F with the DAVIS boundary tolerance (``db_eval_boundary``), numpy only.
- ``davis``: per-object statistics and the DAVIS 2017 J&F (semi-supervised and unsupervised).
- ``mevis``: per-expression j, f (MeViS, Ref-YouTube-VOS, VISA's Ref-DAVIS) and MeViS's J&F.
- ``revos``: VISA's ReVOS J, F, A, R, per-expression rounding, referring / reasoning / overall.
- ``refer``: LISA's gIoU and cIoU (ignore label 255), and HyperSeg's variant.

Per-expression functions return a small dataclass (a row with its intersection and union); the ``summarize_*``
functions take lists of those rows and give the dataset numbers.
"""

from .assignment import linear_sum_assignment
from .boundary import (
    BOUND_TH,
    BoundaryMeasure,
    boundary_f,
    boundary_f_frames,
    boundary_map,
    boundary_measure,
    dilate,
    disk,
    tolerance_radius,
)
from .davis import (
    DavisSummary,
    ObjectResult,
    Statistics,
    annotation_objects,
    evaluate_objects,
    evaluate_sequence,
    frame_statistics,
    result_objects,
    summarize_davis,
)
from .mevis import ExpressionScore, MevisSummary, frame_scores, score_expression, summarize_mevis
from .refer import PairScore, ReferSummary, score_pair, summarize_refer
from .region import RegionCounts, foreground, jaccard, region_counts, region_similarity, region_similarity_frames
from .revos import (
    REASONING,
    REFERRING,
    RevosCategory,
    RevosPercent,
    RevosScore,
    RevosSummary,
    accuracy,
    official_prediction,
    percent_row,
    robustness,
    score_revos_expression,
    sum_object_masks,
    summarize_revos,
)

__all__ = [
    "BOUND_TH",
    "REASONING",
    "REFERRING",
    "BoundaryMeasure",
    "DavisSummary",
    "ExpressionScore",
    "MevisSummary",
    "ObjectResult",
    "PairScore",
    "ReferSummary",
    "RegionCounts",
    "RevosCategory",
    "RevosPercent",
    "RevosScore",
    "RevosSummary",
    "Statistics",
    "accuracy",
    "annotation_objects",
    "boundary_f",
    "boundary_f_frames",
    "boundary_map",
    "boundary_measure",
    "dilate",
    "disk",
    "evaluate_objects",
    "evaluate_sequence",
    "foreground",
    "frame_scores",
    "frame_statistics",
    "jaccard",
    "linear_sum_assignment",
    "official_prediction",
    "percent_row",
    "region_counts",
    "region_similarity",
    "region_similarity_frames",
    "result_objects",
    "robustness",
    "score_expression",
    "score_pair",
    "score_revos_expression",
    "sum_object_masks",
    "summarize_davis",
    "summarize_mevis",
    "summarize_refer",
    "summarize_revos",
    "tolerance_radius",
]
