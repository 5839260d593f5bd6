"""The real engine on a simulated 16-GPU cluster: scaling efficiency, the tail, the driver's cost, long-first
scheduling and the loss of nodes, measured with a simulated predictor.

    python benchmarks/scale.py                # the whole study (about 30 min here) -> results/scale.json
    python benchmarks/scale.py --quick        # 2 nodes, small loads: checks that it runs
    python benchmarks/scale.py --keep 1.0 --actors 16 --scaling-only --out benchmarks/results/scale_keep1.json
                                              # the 16-actor ReVOS-like run with the cost at keep 1.0

A measuring instrument, not a product path. The cluster is ``ray.cluster_utils.Cluster`` on this machine: a head
with no CPUs and 8 nodes declaring 2 GPUs each, on 127.0.0.1 (the engine then gives each of the 16 actors
``num_gpus=1``). Everything but the model is real: Ray Data's actor pool, the shards (WebDataset tars of tiny
JPEG frames, decoded by the worker), the worker's rows, the Parquet sink and its markers. The model is replaced
in every actor (a Ray ``worker_process_setup_hook``) by ``SimulatedPredictor``, which returns empty masks after
sleeping for what a GPU would take: ``frames x t_frame + masks x t_mask`` seconds (masks = expressions x frames),
with ``t = TFLOPs / sustained TFLOP/s`` from ``benchmarks/results/flops.json`` (HyperSeg-3B, image case, at the
keep asked for) and an assumed 100 TFLOP/s sustained per GPU (about a third of an A100's dense bf16 peak). It
sleeps, so 16 actors fit on 2 cores.

Workloads. ReVOS-like: one video per shard, lengths from a log-normal with median 60 frames clipped to 10-200
(an assumed spread with ReVOS's range, not its measured histogram), 1 to 10 expressions each (uniform).
Image-corpus-like: shards of 1,000 images with 1 to 3 prompts each. Loads grow with the actors (weak scaling):
``--videos-per-actor`` videos (or ``--image-shards-per-actor`` shards) per actor, so each run takes about as long.

Measures, per run: each actor's busy intervals (wall-clock start and end of every ``process(shard)``, written by
the hook to a scratch folder); efficiency = sum of busy time / (actors x span), span from the first shard's start
to the last one's end; the tail = the share of the span with fewer than all actors busy; the driver's CPU time
and peak memory. Straggler handling: the same 16-actor load in input order (shortest first, the worst case)
and longest first (``run.longest_first``, from the manifest's counts). Faults: 2 of the 8 nodes removed mid-run;
every sample must come out exactly once, and the wall-time cost against the undisturbed run is reported.

The other measures at scale need no cluster and have scripts of their own: ``resume.py`` (planning and resuming
100,000 shards), ``query.py`` (querying a 10M-row table, and compaction) and ``plan.py`` (the dry run's
planning table).
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Every node on 127.0.0.1 (tests/conftest.py says why); read when ray is imported, so set before any import of it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from pipeline.data import Expression, ShardSample, build_meta, make_key, write_shards  # noqa: E402
from pipeline.data.sample import frame_member  # noqa: E402
from pipeline.engine.dryrun import per_unit_tflops  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
FLOPS = ROOT / "benchmarks" / "results" / "flops.json"
GPU_TFLOPS = 100.0
FRAME = (8, 8)  # tiny frames: decoding them costs the 2 real cores next to nothing


def cost_model(keep: float, gpu_tflops: float = GPU_TFLOPS) -> dict:
    """Seconds per frame and per mask (expression x frame) on one GPU, from the FLOP table at ``keep`` (split as
    ``--dry-run`` splits it)."""
    table = next(t for t in json.loads(FLOPS.read_text())["tables"] if t["meta"]["preset"] == "hyperseg-3b")
    _, frame, mask = per_unit_tflops(table, keep, "evtp")
    return {
        "keep": keep,
        "gpu_tflops": gpu_tflops,
        "frame_tflops": frame,
        "mask_tflops": mask,
        "t_frame": frame / gpu_tflops,
        "t_mask": mask / gpu_tflops,
        "source": f"benchmarks/results/flops.json, hyperseg-3b image, keep {keep}",
    }


class SimulatedPredictor:
    """Stands in for ``HyperSegPredictor`` in the worker: sleeps for the cost model's time and returns empty masks
    with plausible scores. Not a model: a measuring instrument."""

    def __init__(self, config, cost: dict):
        from types import SimpleNamespace

        self.pruning, self.cost = config.pruning, cost
        self.model = SimpleNamespace(grid=(27, 27))
        tokens = 27 * 27
        self.k = tokens if config.pruning.method == "none" else max(1, round(float(config.pruning.keep) * tokens))

    def _segmentation(self, frame: np.ndarray):
        from pipeline.model.hyperseg.predictor import Segmentation

        return Segmentation(
            mask=np.zeros(frame.shape[:2], bool), score=0.5, seg_score=0.5, mask_score=0.5, stability=float("nan"),
            query=0, kept=np.arange(self.k), feature_radius=1.0, grid_radius=1.0, lam=0.0, sequence_length=100,
            seconds={}, queries_scored=1,
        )  # fmt: skip

    def _sleep(self, frames: int, masks: int) -> None:
        time.sleep((frames * self.cost["t_frame"] + masks * self.cost["t_mask"]) * self.cost["time_scale"])

    def encode(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return images

    def segment(self, encoded: list[np.ndarray], texts: list[list[str]], task: str):
        self._sleep(len(encoded), sum(len(t) for t in texts))
        return [[self._segmentation(f) for _ in t] for f, t in zip(encoded, texts, strict=True)], None

    def predict(self, frame: np.ndarray, texts: list[str], task: str):
        self._sleep(1, len(texts))
        return [self._segmentation(frame) for _ in texts]

    def predict_video(self, frames: list[np.ndarray], texts: list[str], task: str):
        self._sleep(len(frames), len(frames) * len(texts))
        return [[self._segmentation(f) for _ in texts] for f in frames]


def install() -> None:
    """In every Ray worker of the benchmark's driver: the simulated model, and busy intervals logged per shard."""
    from pipeline.engine import worker

    cost, log = json.loads(os.environ["SCALE_COST"]), os.environ["SCALE_LOG"]
    worker.build_predictor = lambda config: SimulatedPredictor(config, cost)
    original = worker.ShardProcessor.process

    def process(self, url, repeated=None):
        start = time.time()
        stats = original(self, url, repeated)
        with open(f"{log}/{os.getpid()}.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "shard": url, "start": start, "end": time.time()}) + "\n")
        return stats

    worker.ShardProcessor.process = process


def _jpeg(value: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((*FRAME, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def video_load(count: int, seed: int, longest: int = 200) -> list[ShardSample]:
    """``count`` ReVOS-like videos (frames as JPEG members, no ground truth)."""
    rng = np.random.default_rng(seed)
    frame = _jpeg(128)
    out = []
    for i in range(count):
        frames = int(np.clip(round(rng.lognormal(np.log(60), 0.7)), 10, longest))
        expressions = int(rng.integers(1, 11))
        key = make_key("sim", "valid", f"video{i:05d}")
        meta = build_meta(
            key=key,
            media={
                "type": "frames",
                "members": [frame_member(t, "jpg") for t in range(frames)],
                "frame_names": [f"{t:05d}" for t in range(frames)],
            },
            size=FRAME,
            expressions=[Expression(str(e), f"object {e}", "referring", ()) for e in range(expressions)],
            gt=None,
            source={"dataset": "sim", "split": "valid", "original_id": f"video{i:05d}"},
        )
        out.append(ShardSample(key, meta, {frame_member(t, "jpg"): frame for t in range(frames)}))
    return out


def image_load(count: int, seed: int) -> list[ShardSample]:
    rng = np.random.default_rng(seed)
    picture = _jpeg(90)
    out = []
    for i in range(count):
        key = make_key("corpus", "all", f"image{i:07d}")
        prompts = int(rng.integers(1, 4))
        meta = build_meta(
            key=key,
            media={"type": "image", "member": "jpg"},
            size=FRAME,
            expressions=[Expression(str(e), f"thing {e}", "referring", ()) for e in range(prompts)],
            gt=None,
            source={"dataset": "corpus", "split": "all", "original_id": f"image{i:07d}"},
        )
        out.append(ShardSample(key, meta, {"jpg": picture}))
    return out


def shortest_first(manifest: Path) -> None:
    """Reorder a manifest's shards shortest first and strip its counts: input order, the worst case for the tail
    (without counts the engine keeps the input order)."""
    data = json.loads(manifest.read_text())
    data["shards"].sort(key=lambda s: s["frames"] + s["expression_frames"])
    for shard in data["shards"]:
        for name in ("frames", "expressions", "expression_frames"):
            shard.pop(name)
    manifest.write_text(json.dumps(data))


def intervals_of(log: Path) -> list[dict]:
    return [json.loads(line) for path in log.glob("*.jsonl") for line in path.read_text().splitlines()]


def busy_measures(intervals: list[dict], actors: int) -> dict:
    """Span, busy time, efficiency and the tail share from the shards' busy intervals."""
    start, end = min(i["start"] for i in intervals), max(i["end"] for i in intervals)
    span = end - start
    busy = sum(i["end"] - i["start"] for i in intervals)
    # Sweep the interval ends: time with fewer than ``actors`` shards in flight.
    events = sorted([(i["start"], 1) for i in intervals] + [(i["end"], -1) for i in intervals])
    below, running, last = 0.0, 0, start
    for when, change in events:
        if running < actors:
            below += when - last
        running, last = running + change, when
    return {
        "span_s": span,
        "busy_s": busy,
        "efficiency": busy / (actors * span),
        "tail_share": below / span,
        "shards": len(intervals),
        "actors_seen": len({i["pid"] for i in intervals}),
    }


def run_once(cluster_address: str, manifest: str, out: Path, actors: int, log: Path, remove=None) -> dict:
    """One run of the real engine; ``remove(deadline)`` runs in a thread to break nodes mid-run."""
    from pipeline.config import ClusterConfig, DataConfig, ModelConfig, OutputConfig, PruningConfig, RunConfig
    from pipeline.engine.run import run

    shutil.rmtree(log, ignore_errors=True)
    log.mkdir(parents=True)
    config = RunConfig(
        data=DataConfig(manifest),
        output=OutputConfig(str(out)),
        model=ModelConfig(preset="tiny"),
        pruning=PruningConfig("evtp", 0.2),
        cluster=ClusterConfig(address=cluster_address, actors=actors, max_attempts=5),
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    thread = None
    if remove is not None:
        thread = threading.Thread(target=remove, args=(log,), daemon=True)
        thread.start()
    summary = run(config)
    wall = time.perf_counter() - wall
    if thread is not None:
        thread.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    row = {
        "actors": actors,
        "wall_s": wall,
        "driver_cpu_s": cpu,
        "driver_cpu_share": cpu / wall,
        "driver_peak_rss_mb": after.ru_maxrss / 1024,
        "samples": summary.samples,
        "retries": summary.retries,
        "failed_shards": len(summary.failed_shards),
    }
    return row | busy_measures(intervals_of(log), actors)


def exactly_once(out: Path, samples: list[ShardSample]) -> bool:
    from pipeline.results import load

    predictions = load(str(out), "predictions", columns=["sample_key", "expression_id", "frame_index"])
    expected = Counter(
        (s.key, e["id"], t)
        for s in samples
        for e in s.meta["expressions"]
        for t in range(len(s.meta["media"].get("members", [None])))
    )
    got = Counter(zip(predictions.sample_key, predictions.expression_id, predictions.frame_index, strict=True))
    return got == expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus-per-node", type=int, default=2)
    parser.add_argument("--videos-per-actor", type=int, default=12)
    parser.add_argument("--image-shards-per-actor", type=int, default=1)
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--gpu-tflops", type=float, default=GPU_TFLOPS)
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies every simulated GPU time")
    parser.add_argument("--max-frames", type=int, default=200, help="longest video (ReVOS-like: 200)")
    parser.add_argument(
        "--quick", action="store_true", help="2 nodes of 1 GPU, 2 short videos per actor, 100-image shards, 1/10 time"
    )
    parser.add_argument("--actors", help="actor counts of the scaling runs, e.g. 16 (default: 1, 2, 4, ... slots)")
    parser.add_argument(
        "--scaling-only", action="store_true", help="only the scaling runs (no input order, corpus or node loss)"
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.gpus_per_node, args.videos_per_actor, args.max_frames, args.time_scale = 2, 1, 2, 20, 0.1
    image_shard = 100 if args.quick else 1000
    import ray
    from ray.cluster_utils import Cluster
    from ray.data import DataContext

    cost = cost_model(args.keep, args.gpu_tflops) | {"time_scale": args.time_scale}
    slots = args.nodes * args.gpus_per_node
    scratch = Path(tempfile.mkdtemp(prefix="scale-"))
    log = scratch / "busy"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=2, num_gpus=args.gpus_per_node) for _ in range(args.nodes)]
    cluster.wait_for_nodes()
    env = {"SCALE_COST": json.dumps(cost), "SCALE_LOG": str(log)}
    ray.init(address=cluster.address, runtime_env={"worker_process_setup_hook": install, "env_vars": env})
    context = DataContext.get_current()
    context.wait_for_min_actors_s = 900
    context.enable_progress_bars = False
    rows: list[dict] = []
    try:
        counts = [1, slots] if args.quick else [n for n in (1, 2, 4, 8, 16, 32) if n <= slots]
        if args.actors:
            counts = [int(n) for n in args.actors.split(",")]
        videos = video_load(args.videos_per_actor * slots, seed=0, longest=args.max_frames)
        for actors in counts:  # weak scaling: the first videos_per_actor x actors videos
            load = videos[: args.videos_per_actor * actors]
            shards = scratch / f"revos-{actors}"
            write_shards(load, str(shards), max_samples=1)
            row = run_once(cluster.address, str(shards / "manifest.json"), scratch / f"out-{actors}", actors, log)
            rows.append({"workload": "revos-like", "order": "longest first", **row,
                         "exactly_once": exactly_once(scratch / f"out-{actors}", load)})  # fmt: skip
            print(_line(rows[-1]), flush=True)
        if args.scaling_only:
            return _write(args, cost, image_shard, rows, None)
        # Stragglers: the full load in input order (shortest first, no counts) against longest first (above).
        shards = scratch / f"revos-{slots}"
        shortest_first(shards / "manifest.json")
        row = run_once(cluster.address, str(shards / "manifest.json"), scratch / "out-input-order", slots, log)
        rows.append({"workload": "revos-like", "order": "shortest first (input order)", **row,
                     "exactly_once": exactly_once(scratch / "out-input-order", videos)})  # fmt: skip
        print(_line(rows[-1]), flush=True)
        # Image-corpus-like: shards of 1,000 images, every actor busy.
        images = image_load(image_shard * args.image_shards_per_actor * slots, seed=1)
        shards = scratch / "corpus"
        write_shards(images, str(shards), max_samples=image_shard)
        row = run_once(cluster.address, str(shards / "manifest.json"), scratch / "out-corpus", slots, log)
        rows.append({"workload": "image-corpus-like", "order": "longest first", **row,
                     "exactly_once": exactly_once(scratch / "out-corpus", images)})  # fmt: skip
        print(_line(rows[-1]), flush=True)
        # Faults: a quarter of the nodes removed once a third of the shards are done.
        lost = max(1, args.nodes // 4)
        shards = scratch / "revos-faults"
        write_shards(videos, str(shards), max_samples=1)

        def remove(busy: Path) -> None:
            while len(intervals_of(busy)) < len(videos) // 3:
                time.sleep(0.5)
            for node in nodes[-lost:]:
                cluster.remove_node(node, allow_graceful=False)

        row = run_once(cluster.address, str(shards / "manifest.json"), scratch / "out-faults", slots, log, remove)
        rows.append({"workload": "revos-like", "order": f"longest first, {lost} of {args.nodes} nodes removed",
                     **row, "exactly_once": exactly_once(scratch / "out-faults", videos)})  # fmt: skip
        print(_line(rows[-1]), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    undisturbed = next(r for r in rows if r["workload"] == "revos-like" and r["actors"] == slots
                       and r["order"] == "longest first")  # fmt: skip
    faulted = rows[-1]
    fault_cost = {
        "wall_s": faulted["wall_s"] - undisturbed["wall_s"],
        "span_s": faulted["span_s"] - undisturbed["span_s"],
    }
    print(f"losing the nodes cost {fault_cost['span_s']:+.1f} s of span ({fault_cost['wall_s']:+.1f} s of wall)")
    return _write(args, cost, image_shard, rows, fault_cost)


def _write(args, cost: dict, image_shard: int, rows: list[dict], fault_cost: dict | None) -> int:
    print()
    print("workload           order                                actors  span (s)  efficiency  tail   wall (s)  "
          "driver CPU  driver peak MB  exactly once")  # fmt: skip
    for r in rows:
        print(f"{r['workload']:18} {r['order']:36} {r['actors']:>6}  {r['span_s']:8.1f}  {r['efficiency']:10.3f}  "
              f"{r['tail_share']:.3f}  {r['wall_s']:8.1f}  {r['driver_cpu_share']:10.2f}  "
              f"{r['driver_peak_rss_mb']:14.0f}  {r['exactly_once']}")  # fmt: skip
    result = {
        "benchmark": "the real engine on a simulated cluster (benchmarks/scale.py); a simulated predictor",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "cluster": {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "address": "127.0.0.1"},
        "cost_model": cost,
        "workloads": {
            "revos-like": f"one video per shard; frames log-normal, median 60, clipped to 10-{args.max_frames}; 1-10 "
            f"expressions; {args.videos_per_actor} videos per actor (weak scaling)",
            "image-corpus-like": f"shards of {image_shard} images, 1-3 prompts each; "
            f"{args.image_shards_per_actor} shard(s) per actor",
        },
        "rows": rows,
        "fault_cost": fault_cost,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def _line(r: dict) -> str:
    return (
        f"{r['workload']:17} {r['order']:34} {r['actors']:>2} actors  wall {r['wall_s']:6.1f} s  span "
        f"{r['span_s']:6.1f} s  efficiency {r['efficiency']:.3f}  tail {r['tail_share']:.3f}  driver CPU "
        f"{r['driver_cpu_share']:.2f}  peak {r['driver_peak_rss_mb']:.0f} MB  retries {r['retries']}  "
        f"exactly once {r['exactly_once']}"
    )


if __name__ == "__main__":
    sys.exit(main())
