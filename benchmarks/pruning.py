"""Time every token-selection method against one batched Gram matmul of the same features.

    python benchmarks/pruning.py                  # 32 frames x 729 tokens x 1152 dims, keep 0.05/0.1/0.2/0.5
    python benchmarks/pruning.py --batch 4 --repeats 3 --out /tmp/pruning.json

An exact k-center needs every pairwise distance, so one ``bmm(X, X^T)`` is the floor it is measured
against (pruning.md §8.2; target: EVTP <= 1.2x the Gram at every keep). Method and Gram timings are
interleaved round by round, so drifts in machine speed hit both alike. Prints a table and writes
``benchmarks/results/pruning.json`` (``rows``: method, keep, seconds_median, gram_seconds_median,
ratio_to_gram, ...; ``meta``: the machine and settings).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from pipeline.pruning import METHODS, select_tokens

RESULTS = Path(__file__).resolve().parent / "results" / "pruning.json"
TARGET_RATIO = 1.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="frames per call")
    parser.add_argument("--side", type=int, default=27, help="token grid side (27 -> 729 SigLIP tokens)")
    parser.add_argument("--dim", type=int, default=1152, help="feature width (SigLIP-so400m: 1152)")
    parser.add_argument("--keeps", default="0.05,0.1,0.2,0.5", help="comma-separated keep ratios")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keeps = [float(k) for k in args.keeps.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    grid = (args.side, args.side)
    n = args.side * args.side
    generator = torch.Generator().manual_seed(args.seed)
    features = torch.randn(args.batch, n, args.dim, generator=generator)
    scores = torch.rand(args.batch, n, generator=generator)  # stands in for attention received

    def gram() -> torch.Tensor:
        return torch.bmm(features, features.transpose(1, 2))

    def select(method: str, keep: float):
        options = {"scores": scores} if method == "attention" else {}
        return select_tokens(features, grid, keep, method, **options)

    print(
        f"{args.batch} frames x {n} tokens x {args.dim} dims, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cpu_name()}",
        flush=True,
    )
    gram()
    coverage = {(m, k): select(m, k) for m in methods for k in keeps}  # warm-up, and the diagnostics
    gram_times: list[float] = []
    times: dict[tuple[str, float], list[float]] = {key: [] for key in coverage}
    for round_ in range(args.repeats):
        for method in methods:
            gram_times.append(seconds(gram))
            for keep in keeps:
                times[method, keep].append(seconds(lambda m=method, k=keep: select(m, k)))
        print(f"round {round_ + 1}/{args.repeats}: Gram {gram_times[-1] * 1e3:.0f} ms", flush=True)

    gram_median = statistics.median(gram_times)
    rows = []
    for (method, keep), samples in times.items():
        sel = coverage[method, keep]
        median = statistics.median(samples)
        rows.append(
            {
                "method": method,
                "keep": keep,
                "k": sel.k,
                "seconds_median": median,
                "gram_seconds_median": gram_median,
                "ratio_to_gram": median / gram_median,
                "feature_radius_mean": float(sel.feature_radius.mean()),
                "grid_radius_mean": float(sel.grid_radius.mean()),
            }
        )
    print_table(rows, gram_median)
    evtp = [r["ratio_to_gram"] for r in rows if r["method"] == "evtp"]
    if evtp:
        verdict = "met" if max(evtp) <= TARGET_RATIO else "NOT met"
        print(f"target EVTP <= {TARGET_RATIO}x Gram at every keep: {verdict} (worst {max(evtp):.2f}x)")

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch": args.batch,
        "tokens": n,
        "dim": args.dim,
        "repeats": args.repeats,
        "features": "standard normal, float32",
        "gram": "torch.bmm(X, X^T), interleaved with the methods",
        "target_ratio": TARGET_RATIO,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def print_table(rows: list[dict], gram_median: float) -> None:
    print(f"\nGram bmm(X, X^T): {gram_median * 1e3:.1f} ms (median)\n")
    header = f"{'method':<10} {'keep':>5} {'K':>4} {'ms':>8} {'x Gram':>7} {'feat. radius':>12} {'grid radius':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['method']:<10} {r['keep']:>5} {r['k']:>4} {r['seconds_median'] * 1e3:>8.1f} "
            f"{r['ratio_to_gram']:>7.2f} {r['feature_radius_mean']:>12.4f} {r['grid_radius_mean']:>11.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
