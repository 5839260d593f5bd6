"""One shard in, its rows out: the model step of a run, usable with or without Ray.

``ShardWorker`` is the callable class Ray Data runs on each actor (one model copy per actor, loaded
once in ``__init__``); ``process_shard`` is the same work as a plain function, for tests and for the
bare loop the pipeline's throughput is compared with.
"""

import logging
import time
import traceback
from collections.abc import Iterator

import numpy as np
import torch

from ..config import RunConfig
from ..data import ReadError, Sample, read_shard, rle
from ..model import HyperSegPredictor
from .prefetch import background
from .scoring import expression_metrics, uses_foreground, video_foregrounds
from .sink import Sink, shard_id
from .tables import to_table

logger = logging.getLogger(__name__)

TABLES = ("predictions", "tokens", "metrics", "errors")
# Samples decoded ahead of the model: one is enough to hide decoding behind compute; two absorbs jitter.
PREFETCH = 2
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_predictor(config: RunConfig) -> HyperSegPredictor:
    """The model copy of one worker, on the GPU when there is one (bf16 there unless told otherwise)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    m = config.model
    if m.checkpoint is not None:
        predictor = HyperSegPredictor.from_pretrained(
            m.checkpoint, dtype=DTYPES[dtype], device=device, attn_implementation=m.attn_implementation
        )
    else:
        predictor = HyperSegPredictor.from_preset(
            m.preset, seed=m.seed, device=device, attn_implementation=m.attn_implementation
        )
        predictor.model.to(DTYPES[dtype])
    predictor.pruning = config.pruning
    return predictor


def decoded(url: str) -> Iterator[tuple[Sample | ReadError, list[np.ndarray] | Exception | None]]:
    """The shard's samples with their frames decoded (or the decoding error), for ``background``."""
    for item in read_shard(url):
        if isinstance(item, ReadError):
            yield item, None
            continue
        try:
            yield item, item.frames()
        except Exception as error:  # a corrupt member: reported at the sample boundary by the consumer
            yield item, error


def task_of(sample: Sample, kind: str) -> str:
    """The released prompt wording for an expression: the video template for every video expression."""
    if sample.is_video:
        return "video"
    return "reasoning" if kind == "reasoning" else "referring"


class ShardProcessor:
    """Turns the samples of shards into table rows with one predictor."""

    def __init__(self, config: RunConfig, run_id: str, predictor: HyperSegPredictor | None = None):
        self.config = config
        self.run_id = run_id
        self.predictor = predictor or build_predictor(config)
        self.sink = Sink(config.output.uri)

    def process(self, url: str) -> dict:
        """Read, segment and score one shard, write its tables, commit it; returns its stats."""
        start = time.perf_counter()
        rows = {t: [] for t in TABLES}
        counts = {"samples": 0, "expressions": 0, "frames": 0}
        for item, frames in background(decoded(url), PREFETCH):
            if isinstance(item, ReadError):
                rows["errors"].append(self._error(url, item.key, item.stage, "ReadError", item.message))
                continue
            counts["samples"] += 1
            try:
                if isinstance(frames, Exception):
                    raise frames
                produced = self.sample_rows(url, item, frames)
            except Exception as error:  # the sample boundary: record it and go on with the shard
                logger.exception("sample %s of %s failed", item.key, url)
                stage = "decode" if isinstance(error, OSError) else "model"
                rows["errors"].append(self._error(url, item.key, stage, type(error).__name__, _message(error)))
                continue
            for table, new in produced.items():
                rows[table].extend(new)
            counts["expressions"] += len(item.expressions)
            counts["frames"] += len(produced["tokens"])
        name = shard_id(url)
        for table in TABLES:
            self.sink.write_table(table, name, to_table(table, rows[table]))
        stats = {
            "shard": url,
            "shard_id": name,
            "run_id": self.run_id,
            **counts,
            "predictions": len(rows["predictions"]),
            "errors": len(rows["errors"]),
            "seconds": time.perf_counter() - start,
        }
        self.sink.commit(name, stats)
        logger.info(
            "shard %s: %d samples, %d errors, %.1f s", url, counts["samples"], stats["errors"], stats["seconds"]
        )
        return stats

    def sample_rows(self, url: str, sample: Sample, frames: list[np.ndarray]) -> dict[str, list[dict]]:
        """Rows of one sample (its decoded ``frames`` given): predictions per expression per frame, tokens per
        frame, metrics per expression."""
        expressions = sample.expressions
        names = sample.frame_names if sample.is_video else ["00000"]
        names = names if len(names) == len(frames) else [f"{t:05d}" for t in range(len(frames))]
        out = {"predictions": [], "tokens": [], "metrics": []}
        if not expressions:
            return out  # unlabeled and no prompts: nothing to ask
        tasks = sorted({task_of(sample, e.kind) for e in expressions})
        results = {}  # expression id -> per frame Segmentation
        for task in tasks:
            group = [e for e in expressions if task_of(sample, e.kind) == task]
            texts = [e.text for e in group]
            if sample.is_video:
                per_frame = self.predictor.predict_video(frames, texts, task)
            else:
                per_frame = [self.predictor.predict(frames[0], texts, task)]
            for i, e in enumerate(group):
                results[e.id] = [frame[i] for frame in per_frame]
        first = results[expressions[0].id]
        grid = self.predictor.model.grid
        for t, seg in enumerate(first):
            out["tokens"].append(
                {
                    "run_id": self.run_id,
                    "shard": url,
                    "sample_key": sample.key,
                    "frame_index": t,
                    "n": grid[0] * grid[1],
                    "k": len(seg.kept),
                    "grid_h": grid[0],
                    "grid_w": grid[1],
                    "kept": seg.kept.astype(np.int32).tolist(),
                    "feature_radius": seg.feature_radius,
                    "grid_radius": seg.grid_radius,
                    "lam": seg.lam,
                }
            )
        p = self.predictor.pruning
        scored = sample.meta["gt"] is not None
        foregrounds = video_foregrounds(sample, len(first)) if scored and uses_foreground(sample) else None
        for e in expressions:
            for t, seg in enumerate(results[e.id]):
                encoded = rle.encode(seg.mask)
                out["predictions"].append(
                    {
                        "run_id": self.run_id,
                        "shard": url,
                        "sample_key": sample.key,
                        "expression_id": e.id,
                        "frame_index": t,
                        "frame_name": names[t],
                        "mask_counts": encoded["counts"],
                        "mask_height": encoded["size"][0],
                        "mask_width": encoded["size"][1],
                        "score": seg.score,
                        "query": seg.query,
                        "method": p.method,
                        "keep": float(p.keep),
                        "k": len(seg.kept),
                        "sequence_length": seg.sequence_length,
                    }
                )
            if scored:
                predicted = [s.mask for s in results[e.id]]
                out["metrics"].append(self._metrics_row(url, sample, e, predicted, foregrounds))
        return out

    def _metrics_row(
        self, url: str, sample: Sample, expression, predicted: list[np.ndarray], foregrounds: list | None
    ) -> dict:
        source = sample.meta["source"]
        scores = expression_metrics(sample, expression, predicted, foregrounds)
        return {
            "run_id": self.run_id,
            "shard": url,
            "sample_key": sample.key,
            "expression_id": expression.id,
            "dataset": source["dataset"],
            "split": source["split"],
            "kind": expression.kind,
            "frames": len(predicted),
            **scores,
        }

    def _error(self, url: str, key: str | None, stage: str, kind: str, message: str) -> dict:
        return {
            "run_id": self.run_id,
            "shard": url,
            "sample_key": key,
            "stage": stage,
            "error_type": kind,
            "message": message,
        }


def _message(error: Exception) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    return f"{error}{where}"


class ShardWorker:
    """Ray Data's callable class: one model copy per actor; each call processes whole shards."""

    def __init__(self, config_json: str, run_id: str):
        self.processor = ShardProcessor(RunConfig.from_json(config_json), run_id)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = [self.processor.process(str(url)) for url in batch["shard"]]
        return {key: np.array([s[key] for s in stats]) for key in stats[0]}
