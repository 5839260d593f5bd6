"""One shard in, its rows out: the model step of a run, usable with or without Ray.

``ShardProcessor`` holds one model copy and processes whole shards; Ray Data runs it on each actor through
``actor.ShardWorker``, and the bare loop (``run(..., use_ray=False)``) calls it directly.
"""

import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch

from ..config import MODEL_METHODS, RunConfig
from ..data import ReadError, Sample, read_shard, rle
from ..labels import signals
from ..model import HyperSegPredictor, InstructSegPredictor, load
from .prefetch import background
from .scoring import expression_metrics, uses_foreground, video_foregrounds
from .sink import Sink, shard_id
from .tables import to_table

logger = logging.getLogger(__name__)

TABLES = ("predictions", "tokens", "metrics", "tracks", "errors")
# Samples decoded ahead of the model: one is enough to hide decoding behind compute; two absorbs jitter.
PREFETCH = 2
# The stats a shard's attempt returns (and its ``_done`` marker holds).
STATS = (
    "shard",
    "shard_id",
    "run_id",
    "attempt",
    "failed",
    "reason",
    "redone",
    "samples",
    "processed",
    "expressions",
    "frames",
    "predictions",
    "errors",
    "seconds",
)
T = TypeVar("T")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_predictor(config: RunConfig) -> HyperSegPredictor:
    """The model copy of one worker, on the GPU when there is one (bf16 there unless told otherwise)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    m = config.model
    if m.checkpoint is not None:
        predictor = load.from_pretrained(
            m.checkpoint, dtype=DTYPES[dtype], device=device, attn_implementation=m.attn_implementation
        )
    else:
        predictor = load.from_preset(m.preset, seed=m.seed, device=device, attn_implementation=m.attn_implementation)
        predictor.model.to(DTYPES[dtype])
    if config.pruning.references and not isinstance(predictor, InstructSegPredictor):
        raise ValueError("pruning the reference frames (--prune-references) applies to InstructSeg only")
    predictor.pruning = config.pruning
    predictor.share_prefix = m.share_prefix
    if m.compile:
        predictor.compile()
    return predictor


def decoded(
    url: str, skip: set[str] = frozenset()
) -> Iterator[tuple[Sample | ReadError, list[np.ndarray] | Exception | None]]:
    """The shard's samples with their frames decoded (or the decoding error), for ``background``.

    Samples whose key is in ``skip`` are passed on undecoded.
    """
    for item in read_shard(url):
        if isinstance(item, ReadError) or item.key in skip:
            yield item, None
            continue
        try:
            yield item, item.frames()
        except Exception as error:  # a corrupt member: reported at the sample boundary by the consumer
            yield item, error


def _batch_task(sample: Sample, frames) -> str | None:
    """The prompt wording an image sample is batched under; None for what runs alone (videos, undecodable
    samples, no expressions, expressions of two wordings)."""
    if sample.is_video or isinstance(frames, Exception) or not sample.expressions:
        return None
    tasks = {task_of(sample, e.kind) for e in sample.expressions}
    return tasks.pop() if len(tasks) == 1 else None


def task_of(sample: Sample, kind: str) -> str:
    """The released prompt wording for an expression: the video template for every video expression."""
    if sample.is_video:
        return "video"
    return "reasoning" if kind == "reasoning" else "referring"


class GaveUp(Exception):
    """An operation that failed ``io_tries`` times; the message is the last error."""


class ShardProcessor:
    """Turns the samples of shards into table rows with one predictor."""

    def __init__(self, config: RunConfig, run_id: str, predictor: HyperSegPredictor | None = None):
        self.config = config
        self.run_id = run_id
        self.sink = Sink(config.output.uri)
        # Why the model could not be built (None: it was): then every shard is left uncommitted with that reason.
        self.unloadable: str | None = None
        self.predictor = predictor or self._load()

    def _load(self) -> HyperSegPredictor | None:
        """``build_predictor``, tried like storage: weights on a store that is down, a GPU still held by a dead
        process or a file being replaced are not the shards' fault. None (and ``unloadable`` says why) if it
        never loads."""
        try:
            # Whatever stops the model loading is infrastructure, never a data error.
            return self._tried(lambda: build_predictor(self.config), Exception)
        except GaveUp as error:
            self.unloadable = f"the model could not load ({error})"
            logger.error("%s; its shards are left uncommitted", self.unloadable)
            return None

    def _tried(self, operation: Callable[[], T], errors: type[BaseException] | tuple = OSError) -> T:
        """``operation()``, tried ``io_tries`` times with exponential backoff while it raises ``errors``; then
        ``GaveUp`` with the last error as its reason."""
        tries, backoff = self.config.cluster.io_tries, self.config.cluster.io_backoff
        for attempt_no in range(1, tries + 1):
            try:
                return operation()
            except errors as error:
                reason = f"{type(error).__name__}: {_message(error) if not isinstance(error, OSError) else error}"
                if attempt_no == tries:
                    raise GaveUp(reason) from error
                delay = backoff * 2 ** (attempt_no - 1)
                logger.warning("%s; try %d of %d again in %.1f s", reason, attempt_no + 1, tries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: io_tries >= 1")

    def process(self, url: str, repeated: dict[str, str] | None = None) -> dict:
        """Read, segment and score one shard, write its tables, commit it; returns its stats.

        Every storage step (the marker check, the attempt record, reading the shard and writing its tables, the
        marker) is tried ``io_tries`` times; a step that keeps failing leaves the shard uncommitted, its stats
        ``failed`` with the reason.

        Args:
            url: the shard.
            repeated: keys of this shard that an earlier shard holds (key -> that shard): an errors row each.
        """
        start = time.perf_counter()
        name = shard_id(url)
        failed = {k: 0 for k in STATS} | {"shard": url, "shard_id": name, "run_id": self.run_id, "failed": 1}
        if self.unloadable is not None:
            return failed | {"reason": self.unloadable}
        attempt = 0
        try:
            done = self._tried(lambda: self.sink.committed(name))
            if done is not None:  # an earlier attempt committed it and its result was lost (a retried task)
                logger.info("shard %s: already committed by run %s", url, done["run_id"])
                return {k: 0 for k in STATS} | {"reason": ""} | done  # an older marker may lack a field
            # One listing of this shard's attempt records: this run's earlier attempts, and whether another run
            # had started it (runs.shards_redone), so the driver never lists every shard's records.
            runs = self._tried(lambda: self.sink.attempt_runs(name))
            earlier = runs.count(self.run_id)
            failed["redone"] = int(any(r != self.run_id for r in runs))
            if earlier >= self.config.cluster.max_attempts:  # they all died before committing: do not loop
                logger.error("shard %s: %d attempts died in run %s; given up, left uncommitted", url, earlier,
                             self.run_id)  # fmt: skip
                return failed | {"reason": f"{earlier} attempts died", "attempt": earlier}
            where = {"torch_threads": torch.get_num_threads(), **_node()}
            attempt = self._tried(lambda: self.sink.begin(name, self.run_id, **where))
            rows, counts = self._tried(lambda: self._segment_and_write(url, name, repeated or {}))
            stats = {
                "shard": url,
                "shard_id": name,
                "run_id": self.run_id,
                "attempt": attempt,
                "failed": 0,
                "reason": "",
                "redone": failed["redone"],
                **counts,
                "predictions": len(rows["predictions"]),
                "errors": len(rows["errors"]),
                "seconds": time.perf_counter() - start,
            }
            self._tried(lambda: self.sink.commit(name, stats))
        except GaveUp as error:  # storage, not data: left uncommitted for the next run
            logger.error("shard %s: %s; %d tries, left uncommitted", url, error, self.config.cluster.io_tries)
            return failed | {"reason": str(error), "attempt": attempt}
        logger.info(
            "shard %s: %d samples, %d errors, %.1f s", url, counts["samples"], stats["errors"], stats["seconds"]
        )
        return stats

    def _segment_and_write(self, url: str, name: str, repeated: dict[str, str]) -> tuple[dict, dict]:
        rows, counts = self._segment(url, repeated)
        for table in TABLES:
            self.sink.write_table(table, name, to_table(table, rows[table]))
        return rows, counts

    def _segment(self, url: str, repeated: dict[str, str]) -> tuple[dict, dict]:
        """Every table's rows of one shard and its counts (raises ``OSError`` when the shard cannot be read)."""
        rows = {t: [] for t in TABLES}
        counts = {"samples": 0, "processed": 0, "expressions": 0, "frames": 0}
        batch: list[tuple[Sample, list[np.ndarray]]] = []  # image samples of one task, segmented together
        # Decode a whole image batch ahead, so the next batch is ready when the model finishes this one.
        ahead = max(PREFETCH, self.config.cluster.image_batch)
        for item, frames in background(decoded(url, set(repeated)), ahead):
            if isinstance(item, ReadError):
                rows["errors"].append(self._error(url, item.key, item.stage, "ReadError", item.message))
                continue
            counts["samples"] += 1
            if item.key in repeated:
                message = f"key {item.key!r} is also in {repeated[item.key]}, earlier in the input, which keeps it"
                rows["errors"].append(self._error(url, item.key, "key", "DuplicateKey", message))
                continue
            task = _batch_task(item, frames)
            if batch and task != _batch_task(*batch[0]):
                self._flush(url, batch, rows, counts)
            if task is None:
                self._add(url, item, frames, None, rows, counts)
                continue
            batch.append((item, frames))
            if len(batch) >= self.config.cluster.image_batch:
                self._flush(url, batch, rows, counts)
        self._flush(url, batch, rows, counts)
        return rows, counts

    def _add(self, url: str, item: Sample, frames, results: dict | None, rows: dict, counts: dict) -> None:
        """One sample's rows into ``rows`` (segmenting it unless ``results`` are given), or its errors row."""
        try:
            if isinstance(frames, Exception):
                stage = "decode"
                raise frames
            stage = "model"
            produced = self.sample_rows(url, item, frames, results)
        except Exception as error:  # the sample boundary: record it and go on with the shard
            logger.exception("sample %s of %s failed", item.key, url)
            rows["errors"].append(self._error(url, item.key, stage, type(error).__name__, _message(error)))
            return
        for table, new in produced.items():
            rows[table].extend(new)
        counts["processed"] += 1
        counts["expressions"] += len(item.expressions)
        counts["frames"] += len(produced["tokens"])

    def _flush(self, url: str, batch: list, rows: dict, counts: dict) -> None:
        """Segment a batch of image samples in one model call; if the call fails, each sample alone (so the
        error lands on the sample that caused it)."""
        if not batch:
            return
        try:
            results = self.segment_images([s for s, _ in batch], [f[0] for _, f in batch], _batch_task(*batch[0]))
        except Exception:
            logger.exception("a batch of %d images of %s failed; segmenting them one by one", len(batch), url)
            results = [None] * len(batch)
        for (item, frames), result in zip(batch, results, strict=True):
            self._add(url, item, frames, result, rows, counts)
        batch.clear()

    def segment_images(self, samples: list[Sample], images: list[np.ndarray], task: str) -> list[dict]:
        """Image samples' expressions in one encode and one prefill; per sample, expression id -> [Segmentation]."""
        encoded = self.predictor.encode(images)
        per_frame, _ = self.predictor.segment(encoded, [[e.text for e in s.expressions] for s in samples], task)
        return [{e.id: [per_frame[f][i]] for i, e in enumerate(s.expressions)} for f, s in enumerate(samples)]

    def segment_sample(self, sample: Sample, frames: list[np.ndarray]) -> dict[str, list]:
        """Expression id -> per frame ``Segmentation``: one model call per prompt wording, video in frame order."""
        results = {}
        for task in sorted({task_of(sample, e.kind) for e in sample.expressions}):
            group = [e for e in sample.expressions if task_of(sample, e.kind) == task]
            texts = [e.text for e in group]
            if sample.is_video:
                per_frame = self.predictor.predict_video(frames, texts, task)
            else:
                per_frame = [self.predictor.predict(frames[0], texts, task)]
            for i, e in enumerate(group):
                results[e.id] = [frame[i] for frame in per_frame]
        return results

    def sample_rows(
        self, url: str, sample: Sample, frames: list[np.ndarray], results: dict | None = None
    ) -> dict[str, list[dict]]:
        """Rows of one sample (its decoded ``frames`` given): predictions per expression per frame, tokens per
        frame, metrics per expression. ``results`` (from ``segment_images``) skips the model call."""
        expressions = sample.expressions
        names = sample.frame_names if sample.is_video else ["00000"]
        names = names if len(names) == len(frames) else [f"{t:05d}" for t in range(len(frames))]
        out = {"predictions": [], "tokens": [], "metrics": [], "tracks": []}
        if not expressions:
            return out  # unlabeled and no prompts: nothing to ask
        results = results if results is not None else self.segment_sample(sample, frames)
        first = results[expressions[0].id]
        grid = self.predictor.model.grid
        # FastV keeps each expression's own tokens; other methods one set per frame, shared by its expressions.
        owners = expressions if self.predictor.pruning.method in MODEL_METHODS else [None]
        for t, owner in ((t, e) for t in range(len(first)) for e in owners):
            seg = first[t] if owner is None else results[owner.id][t]
            out["tokens"].append(
                {
                    "run_id": self.run_id,
                    "shard": url,
                    "sample_key": sample.key,
                    "frame_index": t,
                    "expression_id": None if owner is None else owner.id,
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
                shape = signals.geometry(seg.mask)
                out["predictions"].append(
                    {
                        "run_id": self.run_id,
                        "shard": url,
                        "sample_key": sample.key,
                        "expression_id": e.id,
                        "expression_text": e.text,
                        "frame_index": t,
                        "frame_name": names[t],
                        "mask_counts": encoded["counts"],
                        "mask_height": encoded["size"][0],
                        "mask_width": encoded["size"][1],
                        "score": seg.score,
                        "seg_score": seg.seg_score,
                        "mask_score": seg.mask_score,
                        "stability": seg.stability,
                        "area": shape.area,
                        "area_fraction": shape.area_fraction,
                        "bbox": list(shape.bbox),
                        "query": seg.query,
                        "method": p.method,
                        "keep": float(p.keep),
                        "k": len(seg.kept),
                        "sequence_length": seg.sequence_length,
                    }
                )
            predicted = [s.mask for s in results[e.id]]
            if sample.is_video:
                summary = signals.track(predicted)
                out["tracks"].append(
                    {
                        "run_id": self.run_id,
                        "shard": url,
                        "sample_key": sample.key,
                        "expression_id": e.id,
                        "frames": summary.frames,
                        "present_fraction": summary.present_fraction,
                        "temporal_iou": summary.temporal_iou,
                    }
                )
            if scored:
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


def _node() -> dict:
    """Where this attempt runs, when inside Ray (the node id a node failure is traced to)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return {"node_id": ray.get_runtime_context().get_node_id()}
    return {}


def _message(error: Exception) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    return f"{error}{where}"
