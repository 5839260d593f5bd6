"""A run's predictions read back one sample at a time, with their categories and filter verdicts.

Streaming: one shard's ``predictions`` file and one sample of that shard are in memory at a time. The run's input
shards are read beside them for what the tables do not hold: each sample's original file name or video id, its
frame rate, and its pixels when an export copies the images.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data import ReadError, Sample, read_shard, rle
from ..engine.sink import shard_id
from ..engine.tables import read_table_file
from ..results import load, table_files
from .filters import Filters, duplicates
from .ontology import Category, Ontology

SIGNALS = ["score", "seg_score", "mask_score", "stability", "area", "area_fraction", "bbox"]


class LabelsError(RuntimeError):
    """A run that cannot be exported as asked."""


@dataclass
class Label:
    """One predicted mask, its category, signals and verdict (``reasons`` empty: accepted)."""

    expression_id: str
    prompt: str
    category: Category
    rle: dict  # COCO compressed RLE, {"size": [h, w], "counts": str}
    score: float
    seg_score: float
    mask_score: float
    stability: float
    area: int
    area_fraction: float
    bbox: tuple[int, int, int, int]
    reasons: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.reasons


@dataclass
class Frame:
    index: int
    name: str
    height: int
    width: int
    labels: list[Label]  # in the sample's prompt order


@dataclass
class LabelledSample:
    """One image or video of the run with every frame's labels, and the sample itself for its pixels."""

    shard: str
    sample: Sample
    frames: list[Frame]
    tracks: dict[str, dict]  # expression_id -> tracks row (frames, present_fraction, temporal_iou); videos only

    @property
    def key(self) -> str:
        return self.sample.key

    @property
    def original_id(self) -> str:
        return self.sample.meta["source"]["original_id"]

    @property
    def is_video(self) -> bool:
        return self.sample.is_video

    @property
    def fps(self) -> float | None:
        return self.sample.meta["media"].get("fps")


def run_prompts(run: str) -> list[str]:
    """Every prompt text of a run's predictions, sorted (from the table; older runs hold no text)."""
    fs, files = table_files(run, "predictions")
    prompts: set[str] = set()
    for path in files:
        texts = read_table_file(fs, path, "predictions", ["expression_text"]).column(0)
        if texts.null_count:
            raise LabelsError(
                f"{path} holds no prompt texts (written before tables version 4); re-run the job into a new folder"
            )
        prompts.update(texts.unique().to_pylist())
    return sorted(prompts)


def labelled_samples(run: str, filters: Filters, ontology: Ontology) -> Iterator[LabelledSample]:
    """Every committed sample of ``run`` with predictions, in shard then shard order, frames and prompts in order;
    ``ontology`` must hold every prompt of the run (``Ontology.check``)."""
    fs, files = table_files(run, "predictions")
    tracks = load(run, "tracks")  # one row per expression: small beside the predictions
    tracks_by_shard = dict(tuple(tracks.groupby("shard", sort=False))) if len(tracks) else {}
    for path in files:  # a shard's file, or a compacted part holding many shards' rows (jobs/compact.py)
        shards = read_table_file(fs, path, "predictions").to_pandas().groupby("shard", sort=False)
        for url, predictions in sorted(shards, key=lambda item: shard_id(item[0])):  # as their own files sort
            yield from _shard_samples(url, predictions, tracks_by_shard.get(url), filters, ontology)


def _shard_samples(
    url: str, predictions: pd.DataFrame, tracks: pd.DataFrame | None, filters: Filters, ontology: Ontology
) -> Iterator[LabelledSample]:
    by_key = dict(tuple(predictions.groupby("sample_key", sort=False)))
    tracks_by_key = dict(tuple(tracks.groupby("sample_key", sort=False))) if tracks is not None else {}
    for sample in read_shard(url):
        if isinstance(sample, ReadError):
            if sample.key is None or sample.key in by_key:
                raise LabelsError(f"cannot read {sample.key or 'the shard'} of {url} ({sample.message})")
            continue
        rows = by_key.get(sample.key)
        if rows is None:
            continue
        summaries = tracks_by_key.get(sample.key)
        summaries = {} if summaries is None else {r.expression_id: r._asdict() for r in summaries.itertuples()}
        yield LabelledSample(url, sample, _frames(sample, rows, filters, ontology), summaries)


def _frames(sample: Sample, rows: pd.DataFrame, filters: Filters, ontology: Ontology) -> list[Frame]:
    order = {e.id: i for i, e in enumerate(sample.expressions)}
    rows = rows.assign(_order=rows.expression_id.map(order)).sort_values(["frame_index", "_order"])
    frames = []
    for index, group in rows.groupby("frame_index", sort=True):
        labels = []
        for r in group.itertuples():
            label = Label(
                expression_id=r.expression_id,
                prompt=r.expression_text,
                category=ontology.categories[r.expression_text],
                rle={"size": [int(r.mask_height), int(r.mask_width)], "counts": r.mask_counts},
                score=float(r.score),
                seg_score=float(r.seg_score),
                mask_score=float(r.mask_score),
                stability=float(r.stability),
                area=int(r.area),
                area_fraction=float(r.area_fraction),
                bbox=tuple(int(v) for v in r.bbox),
            )
            label.reasons = filters.reasons(label.score, label.stability, label.area, label.area_fraction)
            labels.append(label)
        if filters.dedup_iou is not None:
            passing = [label for label in labels if label.accepted]
            found = duplicates([lab.rle for lab in passing], [lab.score for lab in passing], filters.dedup_iou)
            for i, (kept, iou) in found.items():
                passing[i].reasons.append(f"duplicate of {passing[kept].prompt!r} (IoU {iou:.2f})")
        first = group.iloc[0]
        frames.append(Frame(int(index), str(first.frame_name), int(first.mask_height), int(first.mask_width), labels))
    return frames


def decode(label: Label) -> np.ndarray:
    """A label's mask as ``(H, W)`` bool."""
    return rle.decode(label.rle, tuple(label.rle["size"]))
