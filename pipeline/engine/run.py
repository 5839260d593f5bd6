"""A run: the pending shards through a pool of model actors with Ray Data, then the ``runs`` row.

Ray Data does the plumbing (ray.md §0): ``from_items(pending shards)`` -> ``map_batches(ShardWorker,
batch_size=1, compute=ActorPoolStrategy(size=actors))``. Each actor owns one model copy, on a GPU
(``num_gpus=1``) only when the cluster has GPUs: asking for a GPU on a CPU-only cluster hangs. Actors
take a fraction of a CPU so that read tasks can always be scheduled. Shards with a ``_done`` marker are
skipped, which makes re-running a command resume it.
"""

import importlib.metadata
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import RunConfig
from ..data import shard_urls
from .sink import Sink, shard_id
from .tables import to_table
from .worker import ShardProcessor, ShardWorker

logger = logging.getLogger(__name__)

PACKAGES = ("torch", "transformers", "ray", "pyarrow", "webdataset", "fsspec", "pycocotools", "numpy")


@dataclass
class RunSummary:
    """What a run did; the same numbers as its ``runs`` row."""

    run_id: str
    shards_total: int
    shards_skipped: int
    shards_done: int
    samples: int
    expressions: int
    frames: int
    errors: int
    seconds: float


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def fingerprint(config: RunConfig) -> dict:
    """What decides a run's rows: the model, the pruning and the input (not where or how widely it runs)."""
    raw = json.loads(config.to_json())
    return {"model": raw["model"], "pruning": raw["pruning"], "data": raw["data"]}


def pending_shards(config: RunConfig) -> tuple[list[str], int]:
    """The input shards not yet committed in the output folder, and how many there are in all."""
    urls = shard_urls(config.data.shards)
    if not urls:
        raise ValueError(f"no shards match {config.data.shards!r}")
    done = Sink(config.output.uri).done()
    return [u for u in urls if shard_id(u) not in done], len(urls)


def run(config: RunConfig, *, use_ray: bool = True, overwrite: bool = False) -> RunSummary:
    """Process every pending shard of ``config`` and append a ``runs`` row.

    Args:
        config: the run.
        use_ray: False runs the same shard work in this process, one shard after another (the bare loop).
        overwrite: replace an output folder written under another configuration (else that is refused).
    """
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    started = datetime.now(timezone.utc)
    start = time.perf_counter()
    Sink(config.output.uri).claim(fingerprint(config), overwrite=overwrite)
    pending, total = pending_shards(config)
    logger.info("run %s: %d of %d shards pending", run_id, len(pending), total)
    stats = _run_ray(config, run_id, pending) if use_ray and pending else _run_here(config, run_id, pending)
    seconds = time.perf_counter() - start
    summary = RunSummary(
        run_id=run_id,
        shards_total=total,
        shards_skipped=total - len(pending),
        shards_done=len(stats),
        samples=sum(s["samples"] for s in stats),
        expressions=sum(s["expressions"] for s in stats),
        frames=sum(s["frames"] for s in stats),
        errors=sum(s["errors"] for s in stats),
        seconds=seconds,
    )
    row = {
        "run_id": run_id,
        "config": config.to_json(),
        "versions": json.dumps(versions(), sort_keys=True),
        "model_checksum": model_checksum(config),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards_total": summary.shards_total,
        "shards_skipped": summary.shards_skipped,
        "shards_done": summary.shards_done,
        "samples": summary.samples,
        "expressions": summary.expressions,
        "frames": summary.frames,
        "errors": summary.errors,
        "seconds": seconds,
        "frames_per_second": summary.frames / seconds if seconds > 0 else 0.0,
    }
    Sink(config.output.uri).write_table("runs", run_id, to_table("runs", [row]))
    return summary


def _run_here(config: RunConfig, run_id: str, pending: list[str]) -> list[dict]:
    if not pending:
        return []
    processor = ShardProcessor(config, run_id)
    stats = []
    for i, url in enumerate(pending):
        stats.append(processor.process(url))
        logger.info("%d/%d shards", i + 1, len(pending))
    return stats


def _run_ray(config: RunConfig, run_id: str, pending: list[str]) -> list[dict]:
    import ray

    if not ray.is_initialized():
        ray.init(address=config.cluster.address, ignore_reinit_error=True)  # None: RAY_ADDRESS or a local instance
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = min(config.cluster.actors, len(pending))
    num_gpus = 1 if gpus >= 1 else 0
    # Leave a whole CPU for the read tasks: a pool that reserves every CPU never schedules them.
    cpus = max(0.1, min(1.0, (resources.get("CPU", 1) - 1) / actors))
    logger.info("%d actors (%s GPU each, %.2f CPU each) on %s", actors, num_gpus, cpus, resources)
    items = [{"shard": url} for url in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        ShardWorker,
        fn_constructor_kwargs={"config_json": config.to_json(), "run_id": run_id},
        batch_size=config.cluster.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=num_gpus,
        num_cpus=cpus,
    )
    stats = []
    for row in results.iter_rows():
        stats.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        logger.info("%d/%d shards", len(stats), len(pending))
    return stats


def model_checksum(config: RunConfig) -> str:
    """sha256 over the checkpoint's safetensors files (names and bytes), or the preset and seed."""
    if config.model.checkpoint is None:
        return f"preset:{config.model.preset}:seed{config.model.seed}"
    import hashlib

    from ..model.checkpoint import weight_files

    digest = hashlib.sha256()
    for path in weight_files(config.model.checkpoint):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
