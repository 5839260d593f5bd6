"""A run's predictions to a labelled dataset in one streaming pass: filters, categories, a format, the QC sheet.

from pipeline.labels.export import export
summary = export("runs/pseudo-label", "coco", "labels/coco.json", Filters(min_score=0.5))
"""

import dataclasses
import json
import math
import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

import fsspec
from tqdm import tqdm

from .coco import CocoResultsWriter, CocoWriter
from .filters import Filters
from .labelstudio import LabelStudioWriter
from .ontology import Ontology
from .source import LabelsError, labelled_samples, run_prompts
from .video import DavisWriter, SavWriter

FORMATS = {
    "coco": CocoWriter,
    "coco-results": CocoResultsWriter,
    "labelstudio": LabelStudioWriter,
    "sav": SavWriter,
    "davis": DavisWriter,
}
FILE_FORMATS = ("coco", "coco-results", "labelstudio")  # --out is a JSON file; the others write a folder


def model_version(run: str) -> str:
    """``<checkpoint folder or preset>:<method>@<keep>`` from the run folder's ``_config.json``."""
    try:
        with fsspec.open(f"{run.rstrip('/')}/_config.json", "rt") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise LabelsError(f"{run} is not a run folder (no _config.json)") from None
    model = config["model"]
    name = posixpath.basename(str(model["checkpoint"]).rstrip("/")) if model.get("checkpoint") else model["preset"]
    pruning = config["pruning"]
    return f"{name}:{pruning['method']}@{pruning['keep']:g}"


@dataclass
class CategoryStats:
    masks: int = 0
    accepted: int = 0
    sums: dict = field(default_factory=lambda: defaultdict(float))
    counts: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, label) -> None:
        self.masks += 1
        self.accepted += label.accepted
        for name in ("score", "stability", "area_fraction"):
            value = getattr(label, name)
            if not math.isnan(value):
                self.sums[name] += value
                self.counts[name] += 1

    def mean(self, name: str) -> float:
        return self.sums[name] / self.counts[name] if self.counts[name] else float("nan")


@dataclass
class Summary:
    """What an export wrote: per category counts and mean signals, and the frames and samples it read."""

    format: str
    out: str
    samples: int = 0
    frames: int = 0
    skipped_images: int = 0  # image samples a video-only format left out
    categories: dict = field(default_factory=dict)  # name -> CategoryStats

    def rows(self) -> list[dict]:
        return [
            {
                "category": name,
                "masks": s.masks,
                "accepted": s.accepted,
                "mean_score": s.mean("score"),
                "mean_stability": s.mean("stability"),
                "mean_area_fraction": s.mean("area_fraction"),
            }
            for name, s in sorted(self.categories.items())
        ]


def export(
    run: str,
    fmt: str,
    out: str,
    filters: Filters,
    ontology: Ontology | None = None,
    *,
    copy_images: bool = False,
    image_url_prefix: str = "",
    qc: str | None = None,
    qc_per_grid: int = 12,
    progress: bool = True,
) -> Summary:
    """Export ``run`` as ``fmt`` to ``out`` (a file for COCO and Label Studio, a folder for SA-V and DAVIS);
    ``qc``: also write the QC sheet into that folder."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    prompts = run_prompts(run)
    ontology = ontology or Ontology.identity(prompts)
    ontology.check(prompts)  # before anything is written
    info = {
        "description": "pseudo-labels exported by EVTP-IVS",
        "run": run,
        "model_version": model_version(run),
        "filters": dataclasses.asdict(filters),
    }
    options = {"copy_images": copy_images} | ({"image_url_prefix": image_url_prefix} if fmt == "labelstudio" else {})
    writer = FORMATS[fmt](out, ontology, info, **options)
    sheet = None
    if qc is not None:
        from .qc import QcSheet

        sheet = QcSheet(qc, ontology, per_grid=qc_per_grid)
    summary = Summary(fmt, out, categories={c.name: CategoryStats() for c in ontology.category_list()})
    next_id = 1
    stream = labelled_samples(run, filters, ontology)
    for item in tqdm(stream, desc=f"export {fmt}", unit="sample", disable=not progress):
        ids = list(range(next_id, next_id + len(item.frames)))
        next_id += len(item.frames)
        writer.add(item, ids)
        summary.samples += 1
        summary.frames += len(item.frames)
        for frame in item.frames:
            for label in frame.labels:
                summary.categories[label.category.name].add(label)
        if sheet is not None:
            sheet.add(item)
    writer.close()
    summary.skipped_images = getattr(writer, "skipped_images", 0)
    if sheet is not None:
        sheet.close(summary)
    return summary
