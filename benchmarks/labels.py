"""Export throughput and peak memory of ``jobs/export_labels.py`` on a synthetic run of many masks, and what the
worker's quality signals cost per expression next to post-processing.

    python benchmarks/labels.py               # up to 100,000 masks (25,000 images x 4 prompts), COCO and Label Studio
    python benchmarks/labels.py --masks 400 --out /tmp/labels.json   # tiny: checks that it runs

A run folder is made without a model: shards of small JPEG images (``write_shards``) and a ``predictions`` table
per shard whose masks are random ellipses, with scores, committed as the engine commits. Each export then runs
in its own process at several run sizes, so its peak resident memory (``ru_maxrss``) is its own: an export that
streams has a peak that does not grow with the number of masks. Prints a table and writes
``benchmarks/results/labels.json``.

The signals' cost is timed at HyperSeg-3B's sizes: decoder logits of 100 queries at stride 4 on the 1024 canvas,
a 480 x 640 frame, a few confident queries as trained weights give; post-processing (``best_query``, which now
includes the chosen query's ``mask_quality``) against ``mask_quality`` and the mask's ``geometry`` alone.
"""

import argparse
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import cpu_name
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data import Expression, ShardSample, build_meta, rle, write_shards  # noqa: E402
from pipeline.engine.sink import Sink  # noqa: E402
from pipeline.engine.tables import to_table  # noqa: E402
from pipeline.labels.signals import geometry  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "labels.json"
PROMPTS = ("the red car", "a person", "the dog on the left", "a traffic light")
SIZE = (96, 128)  # frame height, width
PER_SHARD = 1000


def ellipse(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    y, x = np.ogrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(4, h / 3), rng.uniform(4, w / 3)
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def make_run(folder: Path, images: int, seed: int = 0) -> str:
    """Shards of ``images`` JPEGs and a committed run of ``len(PROMPTS)`` predictions per image."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(*SIZE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    jpeg = buffer.getvalue()
    expressions = [Expression(str(i), text, "referring") for i, text in enumerate(PROMPTS)]

    def samples():
        for i in range(images):
            key = f"img{i:07d}"
            source = {"dataset": "bench", "split": "all", "original_id": f"images/{key}.jpg"}
            media = {"type": "image", "member": "jpg"}
            meta = build_meta(key=key, media=media, size=SIZE, expressions=expressions, gt=None, source=source)
            yield ShardSample(key, meta, {"jpg": jpeg})

    infos = write_shards(samples(), str(folder / "shards"), max_samples=PER_SHARD)
    sink = Sink(str(folder / "run"))
    for s, info in enumerate(infos):
        rows, url = [], str(folder / "shards" / info.uri)
        for i in range(s * PER_SHARD, min((s + 1) * PER_SHARD, images)):
            for e, text in enumerate(PROMPTS):
                mask = ellipse(rng, SIZE)
                shape, encoded, seg = geometry(mask), rle.encode(mask), float(rng.uniform(0.2, 1.0))
                rows.append(
                    {
                        "run_id": "bench", "shard": url, "sample_key": f"img{i:07d}", "expression_id": str(e),
                        "expression_text": text, "frame_index": 0, "frame_name": "00000",
                        "mask_counts": encoded["counts"], "mask_height": SIZE[0], "mask_width": SIZE[1],
                        "score": seg * 0.9, "seg_score": seg, "mask_score": 0.9, "stability": rng.uniform(0.5, 1),
                        "area": shape.area, "area_fraction": shape.area_fraction, "bbox": list(shape.bbox),
                        "query": 0, "method": "none", "keep": 1.0, "k": 729, "sequence_length": 800,
                    }
                )  # fmt: skip
        name = Path(info.uri).stem
        sink.write_table("predictions", name, to_table("predictions", rows))
        sink.commit(name, {"run_id": "bench"})
    model = {"checkpoint": "bench", "preset": None}
    config = {"model": model, "pruning": {"method": "none", "keep": 1.0}, "data": {"shards": str(folder / "shards")}}
    (folder / "run" / "_config.json").write_text(json.dumps(config))
    return str(folder / "run")


CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from pipeline.labels.export import export
from pipeline.labels.filters import Filters
start = time.perf_counter()
summary = export({run!r}, {fmt!r}, {out!r}, Filters(), progress=False)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, sum(s.accepted for s in summary.categories.values()), peak)
"""


def measure(run: str, fmt: str, out: str) -> dict:
    code = CHILD.format(root=str(ROOT), run=run, fmt=fmt, out=out)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {fmt} export failed:\n{done.stderr[-3000:]}")
    seconds, masks, peak_kb = done.stdout.split()
    return {"seconds": float(seconds), "masks": int(masks), "peak_mb": int(peak_kb) / 1024}


def signal_cost(repeats: int = 15) -> dict:
    """Median milliseconds per expression of post-processing and of the signals within and beside it."""
    import statistics

    import torch

    from pipeline.model.parts.postprocess import best_query, mask_quality, upsample_to_original

    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(100, 256, 256, generator=generator)
    seg = torch.full((100,), -6.0)
    seg[:8] = torch.linspace(2.0, 0.5, 8)  # trained weights: about ten queries can win (trained_speed.json)
    canvas, resized, original = 1024, (768, 1024), (480, 640)
    plane = upsample_to_original(pred[:1], canvas, resized, original)[0]
    mask = (plane > 0).numpy()

    def median_ms(call) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    post = median_ms(lambda: best_query(pred, seg, canvas, resized, original))
    quality = median_ms(lambda: mask_quality(plane, seg[0]))
    shape = median_ms(lambda: geometry(mask))
    encode = median_ms(lambda: rle.encode(mask))
    return {
        "postprocess_ms": post,
        "mask_quality_ms": quality,
        "geometry_ms": shape,
        "rle_encode_ms": encode,
        "signals_share_of_postprocess": (quality + shape) / post,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=int, default=100_000, help="masks of the largest run")
    parser.add_argument("--formats", default="coco,labelstudio")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = sorted({max(len(PROMPTS), args.masks // f // len(PROMPTS) * len(PROMPTS)) for f in (10, 3, 1)})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for masks in sizes:
            folder = Path(tmp) / f"run{masks}"
            start = time.perf_counter()
            run = make_run(folder, masks // len(PROMPTS))
            print(f"{masks} masks: run made in {time.perf_counter() - start:.0f} s", flush=True)
            for fmt in args.formats.split(","):
                result = measure(run, fmt, str(folder / fmt / "labels.json"))
                size = (folder / fmt / "labels.json").stat().st_size
                rows.append(
                    {
                        "format": fmt,
                        "masks": result["masks"],
                        "seconds": result["seconds"],
                        "masks_per_second": result["masks"] / result["seconds"],
                        "peak_mb": result["peak_mb"],
                        "output_mb": size / 2**20,
                    }
                )
                print(rows[-1], flush=True)
    header = f"{'format':<12} {'masks':>8} {'seconds':>8} {'masks/s':>8} {'peak MB':>8} {'output MB':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['format']:<12} {r['masks']:>8} {r['seconds']:>8.1f} {r['masks_per_second']:>8.0f} "
            f"{r['peak_mb']:>8.0f} {r['output_mb']:>9.1f}"
        )
    print("\n".join(lines))
    cost = signal_cost()
    print(
        f"per expression: post-processing {cost['postprocess_ms']:.1f} ms, of which mask_quality "
        f"{cost['mask_quality_ms']:.2f} ms; geometry beside it {cost['geometry_ms']:.2f} ms "
        f"(signals {100 * cost['signals_share_of_postprocess']:.0f}% of post-processing; the mask's RLE, already "
        f"written, {cost['rle_encode_ms']:.2f} ms)"
    )
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "frame_size": SIZE,
        "prompts_per_image": len(PROMPTS),
        "images_per_shard": PER_SHARD,
        "note": "one process per export; peak_mb is its ru_maxrss (includes the interpreter and imports)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "signals": cost, "meta": meta}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
