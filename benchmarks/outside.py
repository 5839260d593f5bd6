"""Scenes drawn by other hands: does the shipped checkpoint segment what it was not trained on?

    python benchmarks/outside.py                          # 200 scenes -> results/outside.json, ~2 min on 2 cores
    python benchmarks/outside.py --scenes 4 --out /tmp/o  # a quick run (what the test does)

What issue 13's outside check does, written without ``pipeline.synth``: its own renderer (PIL ``ImageDraw``,
PIL's named colours, axis-aligned squares, upright triangles, its own sizes, backgrounds, outlines and optional
4x supersampling), plain expressions ("the blue triangle", "the red circle on the left"), and its own writer of
the RefCOCO refer-API layout (``refs(unc).p``, ``instances.json`` with one RLE per object, COCO ``train2014``
file names). Then the project's real path: ``jobs/make_shards.py --format refcoco`` and ``jobs/eval_refcoco.py``
with the checkpoint, once at keep 1.0 and once per ``--runs`` method:keep.

Reported per run, for all expressions and apart for those with and without "on the left/right": gIoU (mean
per-expression IoU) and cIoU with 95% bootstrap intervals over scenes, and the chance gIoU: the expected IoU of
answering with one of the scene's objects picked at random.
"""

import argparse
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.metrics.bootstrap import interval, ratio_of_sums  # noqa: E402
from pipeline.metrics.refer import score_pair  # noqa: E402
from pipeline.results import load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINT = ROOT / "checkpoints" / "synth-hyperseg"
# PIL's own colour names (ImageColor) under each plain word; a scene draws one of them.
COLOURS = {
    "red": ("red", "crimson", "firebrick"),
    "green": ("green", "lime", "forestgreen", "limegreen"),
    "blue": ("blue", "royalblue", "dodgerblue", "mediumblue"),
    "yellow": ("yellow", "gold"),
    "purple": ("purple", "darkviolet", "mediumorchid"),
    "orange": ("orange", "darkorange"),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ((320, 240), (480, 360), (256, 256), (400, 300), (640, 480), (240, 320))
BACKGROUNDS = ("white", "lightgray", "beige", "lavender", "honeydew", "dimgray")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, **style) -> None:
    if shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), **style)
    elif shape == "square":
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), **style)
    else:
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], **style)


def render(rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    """One scene: the image and its objects (colour word, shape, centre x, visible mask), drawn back to front."""
    width, height = SIZES[rng.integers(len(SIZES))]
    scale = 4 if rng.random() < 0.5 else 1  # supersampled = anti-aliased edges
    canvas = Image.new("RGB", (width * scale, height * scale), BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    draw = ImageDraw.Draw(canvas)
    outline = int(rng.choice([0, 0, 2, 3])) * scale
    objects, full = [], []
    for _ in range(rng.integers(2, 7)):
        colour, shape = list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))]
        half = rng.uniform(0.05, 0.16) * min(width, height)
        cx, cy = rng.uniform(half, width - half), rng.uniform(half, height - half)
        names = COLOURS[colour]
        style = {"fill": names[rng.integers(len(names))], "outline": "black" if outline else None, "width": outline}
        draw_shape(draw, shape, cx * scale, cy * scale, half * scale, **style)
        mask = Image.new("L", (width * scale, height * scale), 0)
        draw_shape(ImageDraw.Draw(mask), shape, cx * scale, cy * scale, half * scale, fill=255, outline=255)
        full.append(np.asarray(mask.resize((width, height), Image.BILINEAR)) >= 128)
        objects.append({"colour": colour, "shape": shape, "x": cx})
    for i, obj in enumerate(objects):  # later objects cover earlier ones
        obj["mask"] = full[i] & ~np.logical_or.reduce([np.zeros_like(full[i]), *full[i + 1 :]])
    image = canvas.resize((width, height), Image.LANCZOS) if scale > 1 else canvas
    return image, [o for o in objects if o["mask"].sum() >= 0.5 * np.pi * 16]  # barely visible: not named


def expressions(objects: list[dict], width: int) -> list[tuple[str, int]]:
    """(sentence, object index): a unique colour and shape by name; two alike told apart by left and right."""
    out = []
    for i, obj in enumerate(objects):
        alike = [j for j, o in enumerate(objects) if (o["colour"], o["shape"]) == (obj["colour"], obj["shape"])]
        name = f"the {obj['colour']} {obj['shape']}"
        if len(alike) == 1:
            out.append((name, i))
        elif len(alike) == 2 and abs(objects[alike[0]]["x"] - objects[alike[1]]["x"]) > 0.2 * width:
            other = objects[alike[0] if alike[1] == i else alike[1]]
            out.append((f"{name} on the {'left' if obj['x'] < other['x'] else 'right'}", i))
    return out


def write_layout(root: Path, scenes: int, seed: int) -> list[dict]:
    """The RefCOCO refer-API layout under ``root``; returns per expression its scene, sentence, target mask and
    chance IoU."""
    rng = np.random.default_rng(seed)
    images_dir = root / "images" / "mscoco" / "images" / "train2014"
    images_dir.mkdir(parents=True, exist_ok=True)
    (root / "refcoco").mkdir(parents=True, exist_ok=True)
    instances = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "shape"}]}
    refs, records, ann_id, sent_id = [], [], 0, 0
    image_id = 0
    while image_id < scenes:
        image, objects = render(rng)
        sentences = expressions(objects, image.width)
        if not sentences:
            continue
        image_id += 1
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        image.save(images_dir / file_name, quality=95)
        instances["images"].append(
            {"id": image_id, "file_name": file_name, "height": image.height, "width": image.width}
        )
        first = ann_id + 1
        for obj in objects:
            ann_id += 1
            encoded = mask_utils.encode(np.asfortranarray(obj["mask"].astype(np.uint8)))
            instances["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": {"size": encoded["size"], "counts": encoded["counts"].decode()},
                    "area": float(mask_utils.area(encoded)),
                    "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
                    "iscrowd": 0,
                }
            )
        for sentence, index in sentences:
            sent_id += 1
            target = objects[index]["mask"]
            chance = np.mean([score_pair(o["mask"], target).iou for o in objects])
            refs.append(
                {
                    "ref_id": sent_id,
                    "ann_id": first + index,
                    "image_id": image_id,
                    "category_id": 1,
                    "split": "val",
                    "file_name": file_name,
                    "sent_ids": [sent_id],
                    "sentences": [{"tokens": sentence.split(), "raw": sentence, "sent": sentence, "sent_id": sent_id}],
                }
            )
            records.append(
                {
                    "image_id": image_id,
                    "sent_id": sent_id,
                    "sentence": sentence,
                    "mask": target,
                    "chance": float(chance),
                }
            )
    (root / "refcoco" / "instances.json").write_text(json.dumps(instances))
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))  # writing, never reading
    return records


def run_job(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def score(run: Path, records: list[dict]) -> dict:
    """gIoU and cIoU of a run's metrics rows, with intervals over scenes, and the chance gIoU of the same rows; the
    same for the expressions that name a colour and shape alone and for those that add left or right."""
    metrics = load(str(run), "metrics")
    by_id = {str(r["sent_id"]): r for r in records}
    placed = np.array([" on the " in by_id[i]["sentence"] for i in metrics.expression_id])
    out = {}
    for part, rows in (("all", metrics), ("colour shape", metrics[~placed]), ("left/right", metrics[placed])):
        if rows.empty:
            continue
        groups = [by_id[i]["image_id"] for i in rows.expression_id]
        giou = interval(rows.j.to_numpy(), groups=groups)
        ciou = interval(rows[["intersection", "union"]].to_numpy(), ratio_of_sums, groups=groups)
        out[part] = {
            "expressions": len(rows),
            "giou": [giou.value, giou.low, giou.high],
            "ciou": [ciou.value, ciou.low, ciou.high],
            "chance_giou": float(np.mean([by_id[i]["chance"] for i in rows.expression_id])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--checkpoint", default=str(CHECKPOINT))
    parser.add_argument("--runs", default="evtp:0.2", help="method:keep pairs beside keep 1.0, comma-separated")
    parser.add_argument("--out", default="runs/outside", help="work folder: layout, shards, run folders")
    parser.add_argument("--results", default=str(RESULTS), help="where outside.json goes")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    for old in [out / "refer", out / "shards", *out.glob("run-*")]:  # a rerun starts from a fresh layout
        shutil.rmtree(old, ignore_errors=True)
    records = write_layout(out / "refer", args.scenes, args.seed)
    shards = out / "shards"
    run_job(["jobs/make_shards.py", "--format", "refcoco", "--root", str(out / "refer"), "--split", "val"]
            + ["--out", str(shards)])  # fmt: skip
    table = {}
    for spec in ["none:1.0", *filter(None, args.runs.split(","))]:
        method, keep = spec.split(":")
        run = out / f"run-{method}-{keep}"
        run_job(["jobs/eval_refcoco.py", "--shards", str(shards / "manifest.json"), "--checkpoint", args.checkpoint]
                + ["--method", method, "--keep", keep, "--output", str(run), "--no-ray", "--overwrite"])  # fmt: skip
        table[spec] = score(run, records)
    print(f"{'run':<10} {'expressions':<13} {'n':>5} {'gIoU [95% CI]':>24} {'cIoU [95% CI]':>24} {'chance':>7}")
    for spec, parts in table.items():
        for part, row in parts.items():
            g, c = row["giou"], row["ciou"]
            print(
                f"{spec:<10} {part:<13} {row['expressions']:>5} {g[0]:>8.3f} [{g[1]:.3f}, {g[2]:.3f}] "
                f"{c[0]:>8.3f} [{c[1]:.3f}, {c[2]:.3f}] {row['chance_giou']:>7.3f}"
            )
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(args.checkpoint).resolve()
    shown = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
    meta = {"scenes": args.scenes, "seed": args.seed, "checkpoint": str(shown)}
    (results / "outside.json").write_text(json.dumps({"meta": meta, "runs": table}, indent=1))
    print(f"wrote {results / 'outside.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
