"""Dataset-level numbers from a run's ``metrics`` table (what is on disk, so a resumed run aggregates it all)."""

import pandas as pd

from ..metrics.mevis import ExpressionScore, summarize_mevis
from ..metrics.refer import PairScore, summarize_refer
from ..metrics.revos import RevosScore, summarize_revos

VIDEO_COLUMNS = ["dataset", "split", "category", "expressions", "J", "F", "J&F", "A", "R"]
IMAGE_COLUMNS = ["dataset", "split", "expressions", "gIoU", "cIoU"]


def video_summary(metrics: pd.DataFrame) -> list[dict]:
    """J, F, J&F (and A, R for ReVOS: referring / reasoning / overall, as VISA) per dataset and split, in %."""
    rows = []
    videos = metrics[metrics.convention.isin(["revos", "mevis"])]
    for (dataset, split, convention), group in videos.groupby(["dataset", "split", "convention"], sort=True):
        records = group.to_dict("records")
        if convention == "revos":
            summary = summarize_revos([RevosScore.from_row(r) for r in records], [r["kind"] for r in records])
            for category in ("referring", "reasoning", "overall"):
                c = getattr(summary, category)
                rows.append(
                    {
                        "dataset": dataset,
                        "split": split,
                        "category": category,
                        "expressions": c.expressions,
                        "J": c.j,
                        "F": c.f,
                        "J&F": c.jf,
                        "A": c.a,
                        "R": c.r,
                    }
                )
        else:
            s = summarize_mevis([ExpressionScore.from_row(r) for r in records], percent=True)
            rows.append(
                {
                    "dataset": dataset,
                    "split": split,
                    "category": "all",
                    "expressions": s.expressions,
                    "J": s.j,
                    "F": s.f,
                    "J&F": s.jf,
                    "A": None,
                    "R": None,
                }
            )
    return rows


def image_summary(metrics: pd.DataFrame) -> list[dict]:
    """gIoU and cIoU (LISA's accumulation, in percent) per dataset and split."""
    rows = []
    images = metrics[metrics.convention == "refer"]
    for (dataset, split), group in images.groupby(["dataset", "split"], sort=True):
        s = summarize_refer([PairScore.from_row(r) for r in group.to_dict("records")])
        rows.append(
            {"dataset": dataset, "split": split, "expressions": s.pairs, "gIoU": 100 * s.giou, "cIoU": 100 * s.ciou}
        )
    return rows
