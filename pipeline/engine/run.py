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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from ..config import ModelConfig, PruningConfig, RunConfig
from ..data import repeated_keys, shard_entries
from .lease import Lease, describe
from .sink import Sink, shard_id
from .tables import to_table

# The model package (transformers: seconds to import) is imported where shards are processed, in the actors
# or here for the bare loop; a Ray driver does not need it (but for a checkpoint's checksum).

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
    processed: int
    expressions: int
    frames: int
    errors: int
    attempts: int
    retries: int
    shards_redone: int
    resumes: list[str]
    failed_shards: list[str]
    seconds: float


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# Model fields that change no result beyond float rounding, so a run may resume with them changed.
SPEED_FIELDS = ("share_prefix", "compile")


def fingerprint(config: RunConfig) -> dict:
    """What decides a run's rows: the model, the pruning and the input (not where, how widely, or whether the
    visual prefix is shared or the model compiled, which change no result beyond float rounding)."""
    raw = json.loads(config.to_json())
    model = {k: v for k, v in raw["model"].items() if k not in SPEED_FIELDS}
    return {"model": model, "pruning": raw["pruning"], "data": raw["data"]}


# Every fingerprinted field's default, per part: what a folder from before a field existed was run with.
FINGERPRINT_DEFAULTS = {
    "model": {k: v for k, v in json.loads(json.dumps(asdict(ModelConfig()))).items() if k not in SPEED_FIELDS},
    "pruning": json.loads(json.dumps(asdict(PruningConfig()))),
}


@dataclass
class Plan:
    """The work of a run: shards not yet committed (longest first when the manifest counts them), per shard its
    keys an earlier shard already holds, and every shard's manifest entry (keys, and counts where recorded)."""

    pending: list[str]
    total: int
    repeated: dict[str, dict[str, str]]
    entries: dict[str, dict]


def plan(config: RunConfig) -> Plan:
    """The shards of ``config`` not yet committed in its output folder: longest first when the manifest counts
    every pending shard's frames, else in input order."""
    entries = shard_entries(config.data.shards)
    if not entries:
        raise ValueError(f"no shards match {config.data.shards!r}")
    done = Sink(config.output.uri).done()
    pending = longest_first([url for url in entries if shard_id(url) not in done], entries)
    return Plan(pending, len(entries), repeated_keys({url: e["keys"] for url, e in entries.items()}), entries)


def shard_cost(entry: dict) -> int | None:
    """A shard's work in frame units: frames encoded plus masks decoded (expressions x frames), from its manifest
    entry; None when the manifest does not count them (written before the counts were recorded)."""
    if "frames" not in entry:
        return None
    return int(entry["frames"]) + int(entry.get("expression_frames", 0))


def longest_first(urls: list[str], entries: dict[str, dict]) -> list[str]:
    """``urls`` by descending cost (ties in input order), so the last shards to finish are short ones and the
    actors run out of work together rather than one of them finishing a 200-frame video alone; unchanged when a
    cost is unknown."""
    costs = [shard_cost(entries[url]) for url in urls]
    if any(c is None for c in costs):
        return urls
    return [url for _, _, url in sorted(zip((-c for c in costs), range(len(urls)), urls, strict=True))]


def run(config: RunConfig, *, use_ray: bool = True, overwrite: bool = False) -> RunSummary:
    """Process every pending shard of ``config``, recording the run in the ``runs`` table.

    The ``runs`` row is written first with status ``running`` and rewritten at the end (``finished`` or
    ``failed``), so a driver that dies leaves a row saying so; the next run lists it under ``resumes``. The run
    holds the folder's lease (``lease.py``) throughout: ``LeaseHeld`` if another live driver holds it.

    Args:
        config: the run.
        use_ray: False runs the same shard work in this process, one shard after another (the bare loop).
        overwrite: replace an output folder written under another configuration (else that is refused).
    """
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with Lease(config.output.uri, run_id, timeout=config.cluster.lease_timeout) as lease:
        return _leased(config, run_id, lease, use_ray=use_ray, overwrite=overwrite)


def _leased(config: RunConfig, run_id: str, lease: Lease, *, use_ray: bool, overwrite: bool) -> RunSummary:
    """``run`` once this driver holds the folder's lease."""
    started = datetime.now(timezone.utc)
    start = time.perf_counter()
    sink = Sink(config.output.uri)
    sink.claim(fingerprint(config), overwrite=overwrite, defaults=FINGERPRINT_DEFAULTS)
    work = plan(config)
    earlier = _runs(config.output.uri)  # rows of runs before tables v2 have no status: they are not resumed
    resumes = sorted(earlier.run_id[earlier.status == "running"]) if "status" in earlier else []
    logger.info("run %s: %d of %d shards pending", run_id, len(work.pending), work.total)
    base = {
        "run_id": run_id,
        "config": config.to_json(),
        "versions": json.dumps(versions(), sort_keys=True),
        "model_checksum": model_checksum(config),
        "started_at": started.isoformat(timespec="seconds"),
        "shards_total": work.total,
        "shards_skipped": work.total - len(work.pending),
        "resumes": resumes,
        "lease_taken_over": None if lease.taken_over is None else describe(lease.taken_over, lease.taken_over["why"]),
    }
    _write_run(sink, base, "running", [], 0, time.perf_counter() - start)
    try:
        work_on = _run_ray if use_ray and work.pending else _run_here
        stats = work_on(config, run_id, work, lease.check)
    except BaseException:
        _write_run(sink, base, "failed", [], sink.attempt_count(run_id=run_id), time.perf_counter() - start)
        raise
    # Each shard's stats carry this run's attempts at it and whether an earlier run had started it: the driver
    # does not list every shard's attempt records (at 50,000 shards that is 50 pages on an object store).
    attempts = sum(int(s["attempt"]) for s in stats if s["run_id"] == run_id)
    row = _write_run(sink, base, "finished", stats, attempts, time.perf_counter() - start)
    if row["failed_shards"]:
        count = len(row["failed_shards"])
        logger.error(
            "%d %s left uncommitted (run again to retry them): %s",
            count,
            "shard was" if count == 1 else "shards were",
            "; ".join(
                f"{shard} ({reason})"
                for shard, reason in zip(row["failed_shards"], row["failed_reasons"], strict=True)
            ),
        )
    return RunSummary(
        run_id=run_id,
        shards_total=row["shards_total"],
        shards_skipped=row["shards_skipped"],
        shards_done=row["shards_done"],
        samples=row["samples"],
        processed=row["processed"],
        expressions=row["expressions"],
        frames=row["frames"],
        errors=row["errors"],
        attempts=row["attempts"],
        retries=row["retries"],
        shards_redone=row["shards_redone"],
        resumes=resumes,
        failed_shards=row["failed_shards"],
        seconds=row["seconds"],
    )


def _runs(output: str):
    from ..results import load

    return load(output, "runs")


def _write_run(sink: Sink, base: dict, status: str, stats: list[dict], attempts: int, seconds: float) -> dict:
    """The run's ``runs`` row from the shards' stats and this run's attempt count, written (replacing) now."""
    all_stats = stats
    failed = sorted((s["shard"], str(s.get("reason") or "")) for s in stats if s["failed"])
    stats = [s for s in stats if not s["failed"]]
    frames = sum(s["frames"] for s in stats)
    row = {
        **base,
        "status": status,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds") if status != "running" else None,
        "shards_done": len(stats),
        "failed_shards": [shard for shard, _ in failed],
        "failed_reasons": [reason for _, reason in failed],
        "attempts": attempts,
        "retries": max(0, attempts - len(stats)) if status == "finished" else 0,
        "shards_redone": sum(int(s.get("redone", 0)) for s in all_stats),
        **{k: sum(s[k] for s in stats) for k in ("samples", "processed", "expressions", "frames", "errors")},
        "seconds": seconds,
        "frames_per_second": frames / seconds if seconds > 0 else 0.0,
    }
    sink.write_table("runs", base["run_id"], to_table("runs", [row]))
    return row


def _run_here(config: RunConfig, run_id: str, work: Plan, check: Callable[[], None]) -> list[dict]:
    """The bare loop; ``check()`` between shards raises if this driver lost its lease."""
    if not work.pending:
        return []
    from .worker import ShardProcessor  # the model package (transformers) only where shards are processed

    processor = ShardProcessor(config, run_id)
    stats = []
    for i, url in enumerate(work.pending):
        check()
        stats.append(processor.process(url, work.repeated[url]))
        logger.info("%d/%d shards", i + 1, len(work.pending))
    return stats


def _run_ray(config: RunConfig, run_id: str, work: Plan, check: Callable[[], None]) -> list[dict]:
    import ray

    from .actor import ShardWorker

    if not ray.is_initialized():
        ray.init(address=config.cluster.address, ignore_reinit_error=True)  # None: RAY_ADDRESS or a local instance
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    pending = work.pending
    actors = min(config.cluster.actors, len(pending))
    num_gpus = 1 if gpus >= 1 else 0
    # Leave a whole CPU for the read tasks: a pool that reserves every CPU never schedules them.
    cpus = max(0.1, min(1.0, (resources.get("CPU", 1) - 1) / actors))
    # Torch threads of a CPU actor: the cluster's cores shared out between the actors (Ray spreads them).
    threads = max(1, int(resources.get("CPU", 1)) // actors)
    logger.info(
        "%d actors (%s GPU each, %.2f CPU each, %s) on %s",
        actors,
        num_gpus,
        cpus,
        "CUDA" if num_gpus else f"{threads} torch threads",
        resources,
    )
    # Each shard is one block (one task), so a retry redoes exactly one shard (ray.md §2.5).
    items = [{"shard": url, "repeated": json.dumps(work.repeated[url], sort_keys=True)} for url in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        ShardWorker,
        fn_constructor_kwargs={"config_json": config.to_json(), "run_id": run_id, "cpu_threads": threads},
        batch_size=config.cluster.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=num_gpus,
        num_cpus=cpus,
    )
    stats = []
    for row in results.iter_rows():
        check()
        stats.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        logger.info("%d/%d shards", len(stats), len(pending))
    return stats


def model_checksum(config: RunConfig) -> str:
    """sha256 over the checkpoint's safetensors files (names and bytes), or the preset and seed."""
    if config.model.checkpoint is None:
        return f"preset:{config.model.preset}:seed{config.model.seed}"
    import hashlib

    from ..model.parts.checkpoint import weight_files

    digest = hashlib.sha256()
    for path in weight_files(config.model.checkpoint):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
