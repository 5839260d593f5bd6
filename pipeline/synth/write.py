"""The synthetic world written in the official dataset layouts, so the real converters (and LISA's, VISA's,
HyperSeg's readers) read it as they read RefCOCO, ReasonSeg and ReVOS (metrics.md §2.1, §6.2, §6.6, §6.7).

- ``write_refcoco``: the refer-API layout of ``pipeline/data/layouts/refcoco.py``. One COCO annotation per object
  of a scene: an object nothing covers is stored as its polygon (the scene's masks are pycocotools' raster of that
  polygon, so it decodes back exactly); an occluded one as its visible mask, a list holding one compressed RLE
  with string counts (LISA's ``refer_seg`` reading decodes such a list; HyperSeg's RES json, built by PSALM's
  ``build_RefCOCO.py``, would need the RLE as a dict instead). One ref per expression, one sentence per ref.
- ``write_reasonseg``: labelme jsons whose integer points rasterise, as ``get_mask_from_json`` (and our
  ``layouts.reasonseg.fill_polygon``) does with OpenCV 4.8's fill, to exactly the scene's target masks: the scene is
  drawn with that rasteriser. OpenCV 4.12's fill (``fill_rule="opencv-4.12"``) paints fewer boundary pixels.
- ``write_revos``: frames, ``mask_dict.json`` (one anno_id per track, its visible mask per frame),
  ``mask_dict_foreground.json`` and ``meta_expressions_<split>_.json``.

Beside each layout (``<root>/refcoco/synth_index.json``; ``<root>/synth_index.json`` for ReasonSeg and ReVOS),
``synth_index.json`` holds one record per expression, every split's: the ids its converted sample keeps
(``original_id`` = ``source.original_id``, ``expression_id`` = the expression's id, ``sample_key`` = the shard key,
which the run's metrics rows carry with ``expression_id``), the seed that rebuilds it, and
what the accuracy study groups by: family, kind, target count, target area fraction (the targets' visible pixels
over the image's, averaged over a video's frames), image size, object count, and for images whether a target is
occluded.

Splits draw from disjoint seeds (``samples.generator``), so train and held-out images never coincide. Several
splits may share one root: the shared files (``instances.json``, ``refs(unc).p``, ``mask_dict.json``,
``mask_dict_foreground.json``, ``synth_index.json``) are merged, each split owning a range of ids, and writing a
split again replaces its entries. The same arguments on the same root give byte-identical files.
"""

import io
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import rle
from ..data.fixtures.refcoco import py2_pickle
from ..data.layouts import reasonseg as reasonseg_layout
from ..data.layouts.refcoco import IMAGE_DIR
from ..data.safe_pickle import load_plain
from ..data.sample import make_key
from . import samples
from .expressions import SynthExpression
from .scene import Scene, SceneObject
from .vocabulary import SHAPES

JPEG_QUALITY = 92
INDEX_NAME = "synth_index.json"
# Each split owns the ids [code * ID_SPAN, (code + 1) * ID_SPAN), so splits merge into one root without clashes.
ID_SPAN = 10**7
# RefCOCO split -> (id code, seed split, seed offset); the test splits draw disjoint ranges of the "test" seeds.
REFCOCO_SPLITS = {
    "train": (1, "train", 0),
    "val": (2, "val", 0),
    "test": (3, "test", 0),
    "testA": (4, "test", ID_SPAN),
    "testB": (5, "test", 2 * ID_SPAN),
    "testC": (6, "test", 3 * ID_SPAN),
}
REASONSEG_SPLITS = ("train", "val", "test")
SYNTH_NAME = re.compile(r"\d{8}_synth\.(jpg|json)")
# ReVOS split -> (id code, seed split).
REVOS_SPLITS = {"train": (1, "train"), "valid": (2, "val"), "test": (3, "test")}
REVOS_TYPE_IDS = {"referring": 0, "reasoning": 1}  # meta_expressions type_id (VISA: 0 referring, 1 reason)
# Per-item id slots: ann/ref ids are image_id * SLOTS + index, anno ids video code + index * SLOTS + track.
SLOTS = 10
Progress = Callable[[], None]


@dataclass(frozen=True)
class Written:
    """What a writer wrote: the layout, split, root, samples (images or videos) and expressions."""

    format: str
    split: str
    root: Path
    samples: int
    expressions: int

    def summary(self) -> str:
        return f"{self.format} {self.split}: {self.samples} samples, {self.expressions} expressions under {self.root}"


# ------------------------------------------------------------------------------------------------- RefCOCO


def write_refcoco(
    root: str | Path, *, split: str = "val", count: int, max_expressions: int = 4, progress: Progress | None = None
) -> Written:
    """Write ``count`` scenes as RefCOCO refs of ``split`` under the refer-API ``root`` (merged with other splits).

    Image ids are ``code * 10**7 + index`` (code 1 train, 2 val, 3 test, 4-6 testA-C); an object's ann_id is
    ``image_id * 10 + its paint index``, a ref's ref_id and sent_id ``image_id * 10 + its expression index``.
    """
    if split not in REFCOCO_SPLITS:
        raise ValueError(f"unknown RefCOCO split {split!r}: expected one of {list(REFCOCO_SPLITS)}")
    _check_counts(count, max_expressions, ID_SPAN)
    code, seed_split, offset = REFCOCO_SPLITS[split]
    root = Path(root)
    folder = root / "refcoco"
    images, annotations, refs, records = [], [], [], []
    for index in range(count):
        seed = (seed_split, "refcoco", offset + index)
        sample = samples.refcoco_image(samples.generator(*seed), max_expressions)
        image_id = code * ID_SPAN + index
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        height, width = sample.scene.size
        _put(root / IMAGE_DIR / file_name, _jpeg(sample.scene.image))
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        annotations += [_annotation(image_id * SLOTS + k, image_id, obj) for k, obj in enumerate(sample.scene.objects)]
        for j, expression in enumerate(sample.expressions):
            ref = _ref(image_id * SLOTS + j, image_id, file_name, split, expression, sample.scene)
            refs.append(ref)
            records.append(
                {
                    **_record(split, file_name, str(ref["sent_ids"][0]), expression, seed, j, scene=sample.scene),
                    "sample_key": make_key("refcoco", "unc", split, str(image_id)),  # as layouts.refcoco keys it
                    "image_id": image_id,
                    "ref_id": ref["ref_id"],
                    "ann_id": ref["ann_id"],
                }
            )
        _tick(progress)
    instances_path, refs_path = folder / "instances.json", folder / "refs(unc).p"

    def other_split(image_id: int) -> bool:
        return image_id // ID_SPAN != code

    if instances_path.is_file():  # keep the other splits' images and annotations
        old = json.loads(instances_path.read_bytes())
        images += [i for i in old.get("images", []) if other_split(i["id"])]
        annotations += [a for a in old.get("annotations", []) if other_split(a["image_id"])]
    if refs_path.is_file():
        refs += [r for r in load_plain(refs_path) if other_split(r["image_id"])]
    instances = {
        "info": {"description": "EVTP-IVS synthetic scenes of coloured shapes (pipeline.synth)"},
        "licenses": [],
        "images": sorted(images, key=lambda i: i["id"]),
        "annotations": sorted(annotations, key=lambda a: a["id"]),
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)],
    }
    _put(instances_path, _json(instances))
    _put(refs_path, py2_pickle(sorted(refs, key=lambda r: r["ref_id"])))
    _write_index(folder / INDEX_NAME, split, records)
    return Written("refcoco", split, root, count, len(records))


def _annotation(ann_id: int, image_id: int, obj: SceneObject) -> dict:
    """One object: its polygon when nothing covers it, else its visible mask as ``[RLE]`` (LISA's list form)."""
    if np.array_equal(obj.visible, obj.full):
        segmentation = [[float(v) for v in obj.polygon.reshape(-1)]]
    else:
        segmentation = [rle.encode(obj.visible)]
    ys, xs = np.nonzero(obj.visible)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": SHAPES.index(obj.shape) + 1,
        "segmentation": segmentation,
        "area": float(obj.visible.sum()),
        "bbox": [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)],
        "iscrowd": 0,
    }


def _ref(ref_id: int, image_id: int, file_name: str, split: str, expression: SynthExpression, scene: Scene) -> dict:
    (target,) = expression.targets  # RefCOCO refs name one object
    text = expression.text
    return {
        "ref_id": ref_id,
        "ann_id": image_id * SLOTS + target,
        "image_id": image_id,
        "category_id": SHAPES.index(scene.objects[target].shape) + 1,
        "split": split,
        "sent_ids": [ref_id],
        "file_name": file_name.replace(".jpg", f"_{ref_id}.jpg"),  # the refer API keeps a per-ref name
        "sentences": [{"tokens": text.split(" "), "raw": text, "sent": text, "sent_id": ref_id}],
    }


# ------------------------------------------------------------------------------------------------ ReasonSeg


def labelme_points(polygon: np.ndarray) -> list[list[int]]:
    """The integer points written for a polygon; readers truncate points to int, which leaves these unchanged."""
    return np.rint(polygon).astype(np.int64).tolist()


def labelme_raster(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """What ``get_mask_from_json`` paints for the polygon's written points (OpenCV 4.8's polylines + fillPoly)."""
    points = [(x, y) for x, y in labelme_points(polygon)]
    return reasonseg_layout.fill_polygon(points, height, width, rule="opencv-4.8")


def write_reasonseg(root: str | Path, *, split: str = "val", count: int, progress: Progress | None = None) -> Written:
    """Write ``count`` images, each with one reasoning sentence, as ``<root>/<split>/<8-digit index>_synth.jpg/json``.

    The converted expression id is "0" (the reader numbers the ``text`` entries). Images of this name form beyond
    ``count`` (left by an earlier, larger write) are removed; other files in the folder are left alone.
    """
    if split not in REASONSEG_SPLITS:
        raise ValueError(f"unknown ReasonSeg split {split!r}: expected one of {list(REASONSEG_SPLITS)}")
    _check_counts(count, 1, ID_SPAN)
    root = Path(root)
    records = []
    for index in range(count):
        seed = (split, "reasonseg", index)
        sample = samples.reasonseg_image(samples.generator(*seed), raster=labelme_raster)
        (expression,) = sample.expressions
        scene = sample.scene
        height, width = scene.size
        name = f"{index:08d}_synth"
        labelme = {
            "version": "5.0.1",
            "flags": {},
            "text": [expression.text],
            "is_sentence": True,
            "shapes": [
                {
                    "label": "target",
                    "points": labelme_points(scene.objects[t].polygon),
                    "group_id": None,
                    "shape_type": "polygon",
                    "flags": {},
                }
                for t in expression.targets
            ],
            "imagePath": f"{name}.jpg",
            "imageData": None,
            "imageHeight": height,
            "imageWidth": width,
        }
        _put(root / split / f"{name}.jpg", _jpeg(scene.image))
        _put(root / split / f"{name}.json", json.dumps(labelme, indent=1).encode())
        records.append(
            {
                **_record(split, f"{name}.jpg", "0", expression, seed, 0, scene=scene),
                "sample_key": make_key("reasonseg", split, name),  # as layouts.reasonseg keys it
            }
        )
        _tick(progress)
    # The readers glob the split folder: a larger earlier count's images would join this split.
    folder = root / split
    for path in folder.glob("*_synth.*") if folder.is_dir() else ():
        if SYNTH_NAME.fullmatch(path.name) and int(path.name[:8]) >= count:
            path.unlink()
    _write_index(root / INDEX_NAME, split, records)
    return Written("reasonseg", split, root, count, len(records))


# ------------------------------------------------------------------------------------------------ ReVOS


def write_revos(
    root: str | Path,
    *,
    split: str = "valid",
    count: int,
    frames: int = 8,
    max_expressions: int = 4,
    progress: Progress | None = None,
) -> Written:
    """Write ``count`` videos of ``frames`` frames as ReVOS ``split`` (merged into an existing ``mask_dict.json``).

    Video ids are ``synth/<split>/<index:05d>`` (slashes, as real ReVOS ids have); anno ids are
    ``code * 10**7 + index * 10 + track`` (code 1 train, 2 valid, 3 test), unique across splits.
    """
    if split not in REVOS_SPLITS:
        raise ValueError(f"unknown ReVOS split {split!r}: expected one of {list(REVOS_SPLITS)}")
    _check_counts(count, max_expressions, ID_SPAN // SLOTS)
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    code, seed_split = REVOS_SPLITS[split]
    root = Path(root)
    prefix = f"synth/{split}/"
    mask_dict, foreground, videos, records = {}, {}, {}, []
    for index in range(count):
        seed = (seed_split, "revos", index)
        sample = samples.revos_video(samples.generator(*seed), frames, max_expressions)
        video, tracks = f"{prefix}{index:05d}", sample.video.tracks
        height, width = sample.video.size
        names = [f"{t:05d}" for t in range(frames)]
        for name, image in zip(names, sample.video.frames, strict=True):
            _put(root / "JPEGImages" / video / f"{name}.jpg", _jpeg(image))
        anno = [code * ID_SPAN + index * SLOTS + k for k in range(len(tracks))]
        for k, track in enumerate(tracks):
            mask_dict[str(anno[k])] = [rle.encode(m) for m in track.masks]
        expressions, named = {}, set()
        for j, expression in enumerate(sample.expressions):
            expressions[str(j)] = {
                "exp": expression.text,
                "anno_id": [anno[t] for t in expression.targets],
                "obj_id": list(expression.targets),
                "type_id": REVOS_TYPE_IDS[expression.kind],
            }
            named.update(expression.targets)
            targets = [_union(tracks[t].masks[f] for t in expression.targets) for f in range(frames)]
            records.append(
                {
                    **_record(split, video, str(j), expression, seed, j, targets=targets, objects=len(tracks)),
                    "sample_key": make_key(video),  # as layouts.revos keys it
                    "anno_id": expressions[str(j)]["anno_id"],
                    "frames": frames,
                }
            )
        # VISA's generate_foreground_mask.py: per frame, the OR of every anno_id the video's expressions name.
        union = [_union(tracks[t].masks[f] for t in sorted(named)) for f in range(frames)]
        foreground[video] = {
            "masks_rle": [rle.encode(u) for u in union],
            "foreground_ratio": [float(u.mean()) for u in union],
        }
        videos[video] = {"frames": names, "height": height, "width": width, "expressions": expressions}
        _tick(progress)
    mask_path, foreground_path = root / "mask_dict.json", root / "mask_dict_foreground.json"
    if mask_path.is_file():  # another split's objects stay; this split's are replaced
        old = json.loads(mask_path.read_bytes())
        mask_dict.update({k: v for k, v in old.items() if not (k.isdigit() and int(k) // ID_SPAN == code)})
    if foreground_path.is_file():
        old = json.loads(foreground_path.read_bytes())
        foreground.update({k: v for k, v in old.items() if not k.startswith(prefix)})
    _put(mask_path, _json(dict(sorted(mask_dict.items(), key=lambda kv: _id_order(kv[0])))))
    _put(foreground_path, _json(dict(sorted(foreground.items()))))
    _put(root / f"meta_expressions_{split}_.json", _json({"videos": videos}))
    _write_index(root / INDEX_NAME, split, records)
    return Written("revos", split, root, count, len(records))


# ------------------------------------------------------------------------------------------------ shared


def _record(
    split: str,
    original_id: str,
    expression_id: str,
    expression: SynthExpression,
    seed: tuple[str, str, int],
    expression_index: int,
    *,
    scene: Scene | None = None,
    targets: list[np.ndarray] | None = None,
    objects: int | None = None,
) -> dict:
    """An index record; an image's target is the union of its targets' visible masks, a video's one per frame.

    ``seed`` (split, stream, index of ``samples.generator``) and ``expression_index`` rebuild the expression:
    ``samples.<stream function>(samples.generator(*seed), ...).expressions[expression_index]``.
    """
    if scene is not None:
        targets = [_union(scene.objects[t].visible for t in expression.targets)]
        objects = len(scene.objects)
    height, width = targets[0].shape
    record = {
        "split": split,
        "original_id": original_id,
        "expression_id": expression_id,
        "seed": list(seed),
        "expression_index": expression_index,
        "text": expression.text,
        "family": expression.family,
        "kind": expression.kind,
        "targets": len(expression.targets),
        "target_area_fraction": round(float(np.mean([t.mean() for t in targets])), 6),
        "objects": objects,
        "height": height,
        "width": width,
    }
    if scene is not None:
        record["occluded"] = any(
            not np.array_equal(scene.objects[t].visible, scene.objects[t].full) for t in expression.targets
        )
    return record


def read_index(path: str | Path) -> list[dict]:
    """The records of a ``synth_index.json``."""
    return json.loads(Path(path).read_bytes())


def _write_index(path: Path, split: str, records: list[dict]) -> None:
    """Replace ``split``'s records in the index (other splits' records stay first, in their order)."""
    kept = [r for r in read_index(path) if r.get("split") != split] if path.is_file() else []
    lines = [json.dumps(r, ensure_ascii=False) for r in kept + records]
    _put(path, ("[\n" + ",\n".join(lines) + "\n]\n").encode())


def _union(masks: Iterable[np.ndarray]) -> np.ndarray:
    masks = list(masks)
    return np.logical_or.reduce(masks) if masks else None


def _id_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _check_counts(count: int, max_expressions: int, limit: int) -> None:
    if not 0 <= count < limit:  # each split's ids live in a range of ID_SPAN
        raise ValueError(f"count must be in 0..{limit - 1}, got {count}")
    if not 1 <= max_expressions <= SLOTS:
        raise ValueError(f"max_expressions must be in 1..{SLOTS}, got {max_expressions}")


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _put(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def _tick(progress: Progress | None) -> None:
    if progress is not None:
        progress()


WRITERS = {"refcoco": write_refcoco, "reasonseg": write_reasonseg, "revos": write_revos}

__all__ = [
    "WRITERS",
    "Written",
    "labelme_points",
    "labelme_raster",
    "read_index",
    "write_reasonseg",
    "write_refcoco",
    "write_revos",
]
