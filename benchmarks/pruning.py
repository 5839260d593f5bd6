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

import numpy as np
import torch
from machine import cpu_name
from PIL import Image, ImageDraw

from pipeline.pruning import METHODS, select_tokens
from pipeline.viz import side_by_side, token_overlay

RESULTS = Path(__file__).resolve().parent / "results" / "pruning.json"
TARGET_RATIO = 1.2
PATCH = 14  # SigLIP-so400m/14: a 27x27 grid of 14-pixel patches covers 378 pixels


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
    parser.add_argument("--picture-keep", type=float, default=0.1, help="keep ratio of the token picture")
    return parser.parse_args(argv)


def scene(side: int) -> Image.Image:
    """A synthetic frame: sky and ground, a sun, a car, a thin pole (a small referent) and a ball."""
    size = side * PATCH
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / size
        sky, ground = (int(90 + 100 * t), int(150 + 60 * t), 235), (70, int(140 - 40 * t), 50)
        draw.line([(0, y), (size, y)], fill=sky if t < 0.6 else ground)
    u = size / 27
    draw.ellipse([20 * u, 2 * u, 25 * u, 7 * u], fill=(255, 215, 60))
    draw.rectangle([3 * u, 13 * u, 13 * u, 18 * u], fill=(200, 30, 40))
    draw.rectangle([5 * u, 11 * u, 11 * u, 13 * u], fill=(170, 25, 35))
    draw.line([(18 * u, 6 * u), (18 * u, 21 * u)], fill=(40, 40, 40), width=max(1, int(u / 3)))
    draw.ellipse([20 * u, 18 * u, 24 * u, 22 * u], fill=(30, 60, 200))
    return image


def patch_features(image: Image.Image, side: int, seed: int) -> torch.Tensor:
    """Raw 14x14 RGB patches with a little sensor noise as token features: ``(1, side*side, 588)``."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).view(side, PATCH, side, PATCH, 3)
    patches = pixels.permute(0, 2, 1, 3, 4).reshape(1, side * side, PATCH * PATCH * 3)
    return patches + 0.02 * torch.randn(patches.shape, generator=torch.Generator().manual_seed(seed))


def token_picture(side: int, keep: float, seed: int, out: Path) -> Path:
    """What each distance-based method keeps of the synthetic frame, side by side."""
    image = scene(side)
    features = patch_features(image, side, seed)
    panels, titles = [image], ["frame"]
    for method in ("evtp", "kcenter", "divprune", "grid", "random"):
        sel = select_tokens(features, (side, side), keep, method)
        panels.append(token_overlay(image, sel.indices[0].tolist(), (side, side)))
        titles.append(f"{method} K={sel.k} grid r={float(sel.grid_radius[0]):.1f}")
    path = out.with_name(out.stem + "_tokens.png")
    side_by_side(panels, titles).save(path)
    return path


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
    keys = torch.randn(args.batch, n, 72, generator=generator)  # VisionZip's metric: SigLIP-so400m's head width

    def gram() -> torch.Tensor:
        return torch.bmm(features, features.transpose(1, 2))

    def select(method: str, keep: float):
        options = {"attention": {"scores": scores}, "visionzip": {"scores": scores, "keys": keys}}.get(method, {})
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
        "scores": "uniform random for attention and visionzip (the SigLIP hook that makes them is not timed here)",
        "gram": "torch.bmm(X, X^T), interleaved with the methods",
        "target_ratio": TARGET_RATIO,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(f"wrote {token_picture(args.side, args.picture_keep, args.seed, args.out)}")
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
