"""The planning table: what evaluating or labelling four dataset-sized inputs would cost, from ``--dry-run``'s own
estimate, at keep 1.0 and 0.2.

    python benchmarks/plan.py                       # -> results/plan.json and a table (about a minute)
    python benchmarks/plan.py --corpus 100000 --out /tmp/p.json    # a smaller corpus: checks that it runs

For each input a manifest is written in ``make_shards.py``'s format (per shard: keys, samples, frames,
expressions, masks; no tars, since a dry run reads only the manifest) from the statistics below, then
``pipeline.engine.dryrun.estimate`` (what ``--dry-run`` prints) runs on it with HyperSeg at its released 3B size:
``--method none`` for keep 1.0 and EVTP at keep 0.2. The same numbers come from
``python jobs/eval_revos.py --shards manifest.json --preset hyperseg-3b --keep 0.2 --dry-run`` on a real conversion;
run that on your own manifest for exact counts. GPU-hours assume 100 TFLOP/s sustained per GPU (``--gpu-tflops``).

Statistics, and where each comes from:
- MeViS valid_u: 50 videos, 793 expressions (MeViS README, ../shared/docs/metrics.md §3.1).
- RefCOCO val (UNC): 1,500 images, 3,811 referring expressions (10,834 sentences; the released evaluation runs once
  per expression with its sentences joined, metrics.md §4.5), from the RefCOCO split statistics (Yu et al. 2016).
- ReVOS valid: 1,042 videos and 35,074 expressions in all (VISA, arXiv 2407.11325); the split's own counts are
  not in ../shared and were not checked here: assumed 416 videos and the expressions in proportion (14,003).
- Frames per video (ReVOS, MeViS): not in ../shared; assumed log-normal, median 60, clipped to 10-200, as in
  ``benchmarks/scale.py``.
- The corpus: 10M images, 5 prompts each (the prompt list is the user's), 1,000 images per shard.
Shards follow ``make_shards.py``'s defaults (at most 1,000 samples or 512 MB each; a frame assumed 100 KB).
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import DataConfig, ModelConfig, OutputConfig, PruningConfig, RunConfig  # noqa: E402
from pipeline.engine.dryrun import GPU_TFLOPS, estimate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "plan.json"
FRAME_BYTES = 100_000  # an assumed 720p JPEG frame
SHARD_BYTES, SHARD_SAMPLES = 512e6, 1000  # make_shards.py's defaults
KEEPS = (("none", 1.0), ("evtp", 0.2))


def spread(total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` expressions over ``count`` samples: evenly, the remainder one each to samples drawn at random."""
    counts = np.full(count, total // count)
    counts[rng.choice(count, total % count, replace=False)] += 1
    return counts


def video_dataset(name: str, videos: int, expressions: int, seed: int) -> list[dict]:
    """Per video: frames (log-normal, median 60, 10-200) and expressions (``spread``)."""
    rng = np.random.default_rng(seed)
    frames = np.clip(np.round(rng.lognormal(np.log(60), 0.7, videos)), 10, 200).astype(int)
    counts = spread(expressions, videos, rng)
    return [
        {"key": f"{name}/v{i:06d}", "frames": int(f), "expressions": int(e)}
        for i, (f, e) in enumerate(zip(frames, counts, strict=True))
    ]


def image_dataset(name: str, images: int, expressions: int, seed: int) -> list[dict]:
    counts = spread(expressions, images, np.random.default_rng(seed))
    return [{"key": f"{name}/i{i:08d}", "frames": 1, "expressions": int(e)} for i, e in enumerate(counts)]


def corpus(images: int, prompts: int) -> Iterator[dict]:
    return ({"key": f"corpus/i{i:09d}", "frames": 1, "expressions": prompts} for i in range(images))


def manifest(samples: Iterable[dict]) -> dict:
    """``make_shards.py``'s manifest for ``samples``, cut into shards by its default limits."""
    entries: list[dict] = []
    current: list[dict] = []
    size = count = 0

    def close() -> None:
        entries.append(
            {
                "uri": f"shard-{len(entries):06d}.tar",
                "samples": len(current),
                "bytes": sum(s["frames"] for s in current) * FRAME_BYTES,
                "sha256": "0" * 64,
                "keys": [s["key"] for s in current],
                "frames": sum(s["frames"] for s in current),
                "expressions": sum(s["expressions"] for s in current),
                "expression_frames": sum(s["frames"] * s["expressions"] for s in current),
            }
        )

    for sample in samples:
        weight = sample["frames"] * FRAME_BYTES
        if current and (len(current) >= SHARD_SAMPLES or size + weight > SHARD_BYTES):
            close()
            current, size = [], 0
        current.append(sample)
        size += weight
        count += 1
    close()
    return {"format": "evtp-ivs-shards", "schema_version": 1, "samples": count, "shards": entries}


def inputs(corpus_images: int) -> list[tuple[str, str, Iterable[dict]]]:
    return [
        ("ReVOS valid", "eval_revos.py", video_dataset("revos", 416, 14_003, seed=1)),
        ("MeViS valid_u", "eval_revos.py", video_dataset("mevis", 50, 793, seed=2)),
        ("RefCOCO val", "eval_refcoco.py", image_dataset("refcoco", 1_500, 3_811, seed=3)),
        (f"{corpus_images:,}-image corpus", "pseudo_label.py", corpus(corpus_images, 5)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=int, default=10_000_000, help="images in the corpus")
    parser.add_argument("--gpu-tflops", type=float, default=GPU_TFLOPS)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, job, samples in inputs(args.corpus):
            path = Path(scratch, name.replace(" ", "_").replace(",", ""), "manifest.json")
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(manifest(samples)))
            for method, keep in KEEPS:
                config = RunConfig(
                    data=DataConfig(str(path)),
                    output=OutputConfig(str(path.parent / "run")),
                    model=ModelConfig(preset="hyperseg-3b"),
                    pruning=PruningConfig(method=method, keep=keep),
                )
                started = time.perf_counter()
                e = estimate(config, gpu_tflops=args.gpu_tflops)
                seconds = time.perf_counter() - started
                pending = {count: pair[1] for count, pair in e.counts.items()}
                rows.append(
                    {"input": name, "job": job, "method": method, "keep": keep, "k": e.k, "shards": e.shards[1]}
                    | pending
                    | {"frame_tflops": e.frame_tflops, "expression_tflops": e.expression_tflops}
                    | {"pflops": e.pending_pflops, "gpu_hours": e.gpu_hours, "dry_run_s": round(seconds, 2)}
                )
                print(line(rows[-1]), flush=True)
    print()
    print(table(rows, args.gpu_tflops))
    result = {
        "benchmark": "planning table: --dry-run's estimate on dataset-sized manifests (benchmarks/plan.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "model": "HyperSeg at its released 3B size (benchmarks/results/flops.json, image case)",
        "gpu_tflops": args.gpu_tflops,
        "statistics": __doc__.split("Statistics, and where each comes from:\n", 1)[1].strip(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def line(r: dict) -> str:
    return f"{r['input']}, keep {r['keep']:g}: {r['gpu_hours']:,.2f} GPU-hours (dry run {r['dry_run_s']} s)"


def table(rows: list[dict], gpu_tflops: float) -> str:
    head = (
        f"{'input':24} {'keep':>4} {'shards':>7} {'samples':>11} {'frames':>11} {'expressions':>11} "
        f"{'masks':>12} {'PFLOPs':>10} {'GPU-hours':>10}"
    )
    out = [head]
    for r in rows:
        out.append(
            f"{r['input']:24} {r['keep']:>4g} {r['shards']:>7,} {r['samples']:>11,} {r['frames']:>11,} "
            f"{r['expressions']:>11,} {r['expression_frames']:>12,} {r['pflops']:>10,.1f} {r['gpu_hours']:>10,.2f}"
        )
    out.append(f"GPU-hours at {gpu_tflops:g} TFLOP/s sustained per GPU (assumed), HyperSeg-3B forward FLOPs")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
