"""Decode throughput of local shards on one core: 480p JPEG images and video frames, mp4 frames, RLE masks.

    python benchmarks/data.py                      # 120 images, 4 videos x 30 frames, 854x480, JPEG quality 90
    python benchmarks/data.py --images 8 --videos 1 --frames 4 --width 96 --height 64 --out /tmp/data.json

Synthetic but realistic-looking frames (sky and ground gradients, shapes that move, smooth and fine
sensor noise) are written as shards with ``write_shards`` in a temporary folder, then read back the
way the pipeline reads them: ``read_samples`` (tar parsing, metadata validation, image header
checks) and ``Sample.frames()`` / ``Sample.mask()``. The process is pinned to one CPU where the OS
allows it, so the rates are per core. Target (reported, not asserted): >= 150 frames/s per core for
480p JPEG frames. Prints a table and writes ``benchmarks/results/data.json`` (``rows``: kind, unit,
items, seconds_median, per_second, ...; ``meta``: the machine and settings).
"""

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import PIL
from machine import cpu_name
from PIL import Image, ImageDraw, features

from pipeline.data import Expression, ShardSample, build_meta, read_samples, rle, write_shards
from pipeline.data.reader import decode_image
from pipeline.data.sample import frame_member
from pipeline.data.video import encode_mp4

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"
TARGET_FRAMES_PER_SECOND = 150.0
MP4_FPS = 24


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="image samples (one JPEG each)")
    parser.add_argument("--videos", type=int, default=4, help="video samples (JPEG frames; the same as mp4)")
    parser.add_argument("--frames", type=int, default=30, help="frames per video")
    parser.add_argument("--objects", type=int, default=2, help="ground-truth objects per video (RLE masks)")
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the shards (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


class Scene:
    """A synthetic outdoor scene: fixed gradients and noise, plus shapes that move from frame to frame."""

    def __init__(self, width: int, height: int, rng: np.random.Generator):
        self.width, self.height, self.rng = width, height, rng
        y = np.linspace(0, 1, height)[:, None, None]
        x = np.linspace(0, 1, width)[None, :, None]
        sky = np.array([90, 140, 220]) + np.array([80, 60, 20]) * y + 20 * x
        ground = np.array([60, 110, 50]) + np.array([40, 30, 10]) * x - 30 * (y - 0.6)
        horizon = 0.55 + 0.05 * np.sin(6 * x[..., 0] + rng.uniform(0, 6))
        self.background = np.where(y[..., 0] < horizon, 0, 1)[..., None] * (ground - sky) + sky
        # texture at two scales (clouds and lighting; grass and foliage): noise upsampled smoothly
        for factor, sigma in ((16, 14.0), (3, 8.0)):
            self.background += smooth_noise(rng, width, height, factor, sigma)
        self.shapes = [
            (
                rng.choice(["ellipse", "rectangle", "polygon"]),
                tuple(int(c) for c in rng.integers(20, 235, 3)),
                rng.uniform(0.05, 0.3) * width,
                rng.uniform(0, width),
                rng.uniform(0.2, 0.9) * height,
                rng.uniform(-6, 6),
            )
            for _ in range(6)
        ]

    def frame(self, t: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """RGB uint8 frame ``t`` and the masks of its first shapes (the ground-truth objects)."""
        image = Image.fromarray(self.background.clip(0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        masks = []
        for kind, colour, size, x0, y0, speed in self.shapes:
            x, y = (x0 + speed * t) % self.width, y0
            box = [x - size / 2, y - size / 3, x + size / 2, y + size / 3]
            mask = Image.new("1", image.size)
            for target, fill in ((draw, colour), (ImageDraw.Draw(mask), 1)):
                if kind == "ellipse":
                    target.ellipse(box, fill=fill)
                elif kind == "rectangle":
                    target.rectangle(box, fill=fill)
                else:
                    target.polygon(
                        [(x, y - size / 2), (x + size / 2, y + size / 3), (x - size / 2, y + size / 4)], fill=fill
                    )
            masks.append(np.asarray(mask))
        pixels = np.asarray(image, dtype=np.int16) + self.rng.normal(
            0, 3, (self.height, self.width, 3)
        )  # sensor noise
        return pixels.clip(0, 255).astype(np.uint8), masks


def smooth_noise(rng: np.random.Generator, width: int, height: int, factor: int, sigma: float) -> np.ndarray:
    """Gaussian noise drawn at ``1/factor`` of the size and upsampled bicubically: ``(height, width, 3)``."""
    small = (max(1, width // factor), max(1, height // factor))
    channels = []
    for _ in range(3):
        noise = rng.normal(0, sigma, small[::-1]).astype(np.float32)
        channels.append(np.asarray(Image.fromarray(noise, "F").resize((width, height), Image.BICUBIC)))
    return np.stack(channels, axis=-1)


def jpeg(frame: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def build_samples(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, list[ShardSample]]:
    """The benchmark's samples by kind: single images, videos as JPEG frames (with masks), videos as mp4."""
    size = (args.height, args.width)
    source = {"dataset": "benchmark", "split": "synthetic"}
    expressions = [Expression("0", "the moving shape", "referring", ("0",))]
    images, frame_videos, mp4_videos = [], [], []
    for i in range(args.images):
        frame, _ = Scene(args.width, args.height, rng).frame(0)
        key = f"image{i:05d}"
        meta = build_meta(
            key=key,
            media={"type": "image", "member": "jpg"},
            size=size,
            expressions=[],
            gt=None,
            source={**source, "original_id": key},
        )
        images.append(ShardSample(key, meta, {"jpg": jpeg(frame, args.quality)}))
    for v in range(args.videos):
        scene = Scene(args.width, args.height, rng)
        frames, masks = zip(*(scene.frame(t) for t in range(args.frames)), strict=True)
        members = {frame_member(t, "jpg"): jpeg(f, args.quality) for t, f in enumerate(frames)}
        objects = {str(o): [rle.encode(m[o]) for m in masks] for o in range(args.objects)}
        key = f"video{v:05d}"
        meta = build_meta(
            key=key,
            media={
                "type": "frames",
                "members": list(members),
                "frame_names": [f"{t:05d}" for t in range(args.frames)],
            },
            size=size,
            expressions=expressions if args.objects else [],
            gt={"objects": objects, "ignore": None},
            source={**source, "original_id": key},
        )
        frame_videos.append(ShardSample(key, meta, members))
        even = [f[: args.height // 2 * 2, : args.width // 2 * 2] for f in frames]  # H.264 in yuv420p: even sides
        key = f"mp4{v:05d}"
        meta = build_meta(
            key=key,
            media={"type": "video", "member": "mp4", "fps": MP4_FPS},
            size=even[0].shape[:2],
            expressions=[],
            gt=None,
            source={**source, "original_id": key},
        )
        mp4_videos.append(ShardSample(key, meta, {"mp4": encode_mp4(list(even), fps=MP4_FPS)}))
    return {"image": images, "frames": frame_videos, "mp4": mp4_videos}


def pin_to_one_cpu() -> int | None:
    """Run on a single CPU where the OS allows it (Linux), so rates are per core; the CPU, or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def timed(fn, repeats: int) -> tuple[float, int]:
    """Median seconds of ``fn`` over ``repeats`` runs (after one warm-up), and the item count it returns."""
    count = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def decode_frames(manifest: str) -> int:
    """Read every sample and decode all its frames (the pipeline's path); the frame count."""
    count = 0
    for sample in read_samples(manifest):
        if not hasattr(sample, "frames"):
            raise RuntimeError(f"unreadable benchmark sample: {sample}")
        count += len(sample.frames())
    return count


def decode_masks(manifest: str) -> int:
    """Read every sample and decode every object mask of every frame; the mask count."""
    count = 0
    for sample in read_samples(manifest):
        for object_id in sample.meta["gt"]["objects"]:
            for t in range(len(sample.frame_names)):
                count += sample.mask(object_id, t) is not None
    return count


def decode_in_memory(blobs: list[bytes]) -> int:
    """The JPEG decode alone (``reader.decode_image`` on bytes in memory): the floor of the shard path."""
    for data in blobs:
        decode_image(data)
    return len(blobs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpu = pin_to_one_cpu()
    rng = np.random.default_rng(args.seed)
    print(
        f"building {args.images} images and {args.videos} videos x {args.frames} frames of {args.width}x{args.height}"
    )
    samples = build_samples(args, rng)
    frame_bytes = [d for s in samples["frames"] for d in s.members.values()] + [
        s.members["jpg"] for s in samples["image"]
    ]
    print(f"pinned to CPU {cpu}" if cpu is not None else "not pinned (no sched_setaffinity)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="evtp-data-bench-") as tmp:
        manifests = {}
        for kind, items in samples.items():
            if items:
                write_shards(items, f"{tmp}/{kind}", prefix=kind)
                manifests[kind] = f"{tmp}/{kind}/manifest.json"
        plan = [
            ("image", "frames", "480p JPEG image samples", "image", decode_frames),
            ("frames", "frames", "480p JPEG video-frame samples", "frames", decode_frames),
            ("mp4", "frames", f"H.264 mp4 samples at {MP4_FPS} fps", "mp4", decode_frames),
            ("rle", "masks", "RLE masks of the video-frame samples", "frames", decode_masks),
        ]
        for kind, unit, what, shards, fn in plan:
            if shards not in manifests or (kind == "rle" and not args.objects):
                continue
            seconds, count = timed(lambda fn=fn, shards=shards: fn(manifests[shards]), args.repeats)
            rows.append(row(kind, unit, what, count, seconds, target=kind in ("image", "frames")))
    if frame_bytes:
        seconds, count = timed(lambda: decode_in_memory(frame_bytes), args.repeats)
        what = "reader.decode_image alone on the same JPEG bytes (no shard reading)"
        rows.append(row("jpeg-in-memory", "frames", what, count, seconds, target=False))
    print_table(rows)
    jpeg_rows = [r for r in rows if r["met"] is not None]
    if jpeg_rows:
        worst = min(r["per_second"] for r in jpeg_rows)
        verdict = "met" if worst >= TARGET_FRAMES_PER_SECOND else "NOT met"
        target = f"target >= {TARGET_FRAMES_PER_SECOND:.0f} frames/s per core for JPEG frames"
        print(f"{target}: {verdict} (worst {worst:.0f})")
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "pinned_cpu": cpu,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "numpy": np.__version__,
        "width": args.width,
        "height": args.height,
        "jpeg_quality": args.quality,
        "jpeg_bytes_mean": statistics.mean(len(b) for b in frame_bytes) if frame_bytes else None,
        "images": args.images,
        "videos": args.videos,
        "frames_per_video": args.frames,
        "objects": args.objects,
        "repeats": args.repeats,
        "target_frames_per_second": TARGET_FRAMES_PER_SECOND,
        "path": "write_shards to a local temp folder; read_samples + Sample.frames() / Sample.mask()",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def row(kind: str, unit: str, what: str, count: int, seconds: float, *, target: bool) -> dict:
    """One result row; rows with a target say whether it is met."""
    rate = count / seconds
    return {
        "kind": kind,
        "what": what,
        "unit": unit,
        "items": count,
        "seconds_median": seconds,
        "per_second": rate,
        "target_per_second": TARGET_FRAMES_PER_SECOND if target else None,
        "met": rate >= TARGET_FRAMES_PER_SECOND if target else None,
    }


def print_table(rows: list[dict]) -> None:
    header = f"\n{'kind':<15} {'unit':<7} {'items':>6} {'seconds':>8} {'per second':>11} {'target':>7}  what"
    print(header)
    print("-" * (len(header) + 20))
    for r in rows:
        target = "" if r["met"] is None else ("met" if r["met"] else "NOT met")
        print(
            f"{r['kind']:<15} {r['unit']:<7} {r['items']:>6} {r['seconds_median']:>8.3f} "
            f"{r['per_second']:>11.1f} {target:>7}  {r['what']}"
        )


if __name__ == "__main__":
    sys.exit(main())
