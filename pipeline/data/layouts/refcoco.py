"""RefCOCO, RefCOCO+ and RefCOCOg in the refer-API layout (metrics.md §4.1, §4.5, §6.6) -> one sample per image.

Layout (LISA ``utils/refer.py``, ``utils/dataset.py::ValDataset``)::

    <root>/images/mscoco/images/train2014/COCO_train2014_<12-digit image id>.jpg
    <root>/<dataset>/instances.json        COCO style: images, annotations (polygons or RLE), categories
    <root>/<dataset>/refs(<splitBy>).p     a Python 2 pickle: a list of refs {ref_id, ann_id, image_id,
                                           category_id, split, sent_ids, file_name,
                                           sentences: [{tokens, raw, sent, sent_id}]}

The pickle is read with ``pipeline.data.safe_pickle.load_plain``, which refuses any global, so a tampered file
cannot run code. A ref belongs to ``split`` as the refer API's ``getRefIds(split=...)`` decides: ``train`` and
``val`` exactly, ``test`` any split containing "test", ``testA``/``testB``/``testC`` any containing that letter
(so ``testAB`` counts for both).

Samples: one per image with a ref in the split, sorted by image id (LISA's ``ValDataset`` item). Every sentence of
every ref of the image is one expression, in the file's order (LISA's pair order): id ``str(sent_id)``, text
``sent`` unchanged (LISA lower-cases and strips it when it builds the prompt), kind "referring", object ids
``[str(ann_id)]``. ``gt.objects[str(ann_id)]`` is the annotation's COCO segmentation as one RLE: polygons merged
with pycocotools ``frPyObjects`` (LISA's rasterisation; HyperSeg's ``cv2.fillPoly`` can differ on boundary pixels,
metrics.md §4.5), an RLE (or list of RLEs, as LISA accepts) decoded, an empty segmentation an empty mask. Where an
annotation's polygons overlap, LISA sums them to 2, which its metric (``histc`` over [0, 1]) counts as
background: ``polygon_overlap="union"`` (default; HyperSeg's ``fillPoly`` mask and the object itself) keeps those
pixels, ``"lisa"`` drops them, so LISA's numbers are reproduced exactly.
``source.ids``: ``image_id``, ``split_by``, ``refs`` (per ref in file order: ``ref_id``, ``ann_id``,
``category_id``, its ``split`` and ``sent_ids`` as the expression ids, which rebuilds HyperSeg's one-pair-per-ref
instruction) and ``expressions`` (``str(sent_id)`` -> ``ref_id`` and ``raw``).
"""

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import rle
from ..safe_pickle import load_plain
from ..sample import Expression, ShardSample, build_meta, make_key

logger = logging.getLogger(__name__)

FORMAT = "refcoco"
# refer API: refcoco has unc and google, refcoco+ unc, refcocog umd and google (LISA README uses unc/unc/umd).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLIT_BYS = ("unc", "umd", "google")
SPLITS = ("train", "val", "test", "testA", "testB", "testC")
POLYGON_OVERLAPS = ("union", "lisa")
IMAGE_DIR = Path("images/mscoco/images/train2014")
# The member names the schema allows for an image.
_IMAGE_MEMBERS = {".jpg": "jpg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


def convert(
    root: str | Path,
    *,
    split: str,
    dataset: str = "refcoco",
    split_by: str | None = None,
    image_root: str | Path | None = None,
    polygon_overlap: str = "union",
) -> Iterator[ShardSample]:
    """Yield one sample per image that has a ref in ``split``, sorted by image id.

    Args:
        root: the refer-API data root (LISA's ``refer_seg`` folder) holding ``<dataset>/`` and ``images/``.
        split: ``train``, ``val``, ``test``, ``testA``, ``testB`` or ``testC`` (RefCOCO/+: train, val, testA,
            testB; RefCOCOg umd: train, val, test).
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split_by: ``unc``, ``umd`` or ``google``: which ``refs(<split_by>).p``; default ``unc`` for RefCOCO and
            RefCOCO+, ``umd`` for RefCOCOg.
        image_root: the folder of the COCO train2014 images, if not ``<root>/images/mscoco/images/train2014``.
        polygon_overlap: ``"union"`` keeps pixels where an annotation's polygons overlap, ``"lisa"`` makes them
            background, as LISA's summed uint8 mask scores them.

    Raises:
        ValueError: a bad option, a missing or malformed file (naming it and the problem), or no ref in ``split``.
    """
    if dataset not in DEFAULT_SPLIT_BY:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {sorted(DEFAULT_SPLIT_BY)}")
    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    if split_by not in SPLIT_BYS:
        raise ValueError(f"unknown split_by {split_by!r}: expected one of {list(SPLIT_BYS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {list(SPLITS)}")
    if polygon_overlap not in POLYGON_OVERLAPS:
        raise ValueError(f"unknown polygon_overlap {polygon_overlap!r}: expected one of {list(POLYGON_OVERLAPS)}")
    root = Path(root)
    image_root = Path(image_root) if image_root is not None else root / IMAGE_DIR
    refs_path = root / dataset / f"refs({split_by}).p"
    instances_path = root / dataset / "instances.json"
    refs = load_refs(refs_path)
    images, annotations = load_instances(instances_path)
    chosen = [ref for ref in refs if in_split(ref["split"], split)]
    if not chosen:
        present = sorted({ref["split"] for ref in refs})
        raise ValueError(f"{refs_path}: no ref in split {split!r}; the file's splits are {present}")
    by_image: dict[int, list[dict]] = {}
    for ref in chosen:
        by_image.setdefault(ref["image_id"], []).append(ref)
    logger.info("%s %s %s: %d refs on %d images", dataset, split_by, split, len(chosen), len(by_image))
    context = _Context(dataset, split_by, split, refs_path, instances_path, image_root, polygon_overlap)
    for image_id in sorted(by_image):
        if image_id not in images:
            raise ValueError(f"{instances_path}: no image {image_id}, which refs {_ref_ids(by_image[image_id])} name")
        yield _image_sample(context, images[image_id], by_image[image_id], annotations)


def in_split(ref_split: str, split: str) -> bool:
    """Whether a ref of ``ref_split`` belongs to the requested ``split`` (refer API ``getRefIds``)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split  # "we also consider testAB, testBC, ..." (refer.py)
    if split == "test":
        return "test" in ref_split
    return ref_split == split


@dataclass(frozen=True)
class _Context:
    """What every sample of one conversion shares."""

    dataset: str
    split_by: str
    split: str
    refs_path: Path
    instances_path: Path
    image_root: Path
    polygon_overlap: str


def load_refs(path: Path) -> list[dict]:
    """The refs of ``refs(<splitBy>).p``, checked field by field.

    Raises:
        ValueError: missing file, a pickle naming a global, or a ref without the fields the conversion reads.
    """
    if not path.is_file():
        raise ValueError(f"{path}: missing; the refer API reads the refs from it")
    refs = load_plain(path)
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    for index, ref in enumerate(refs):
        where = f"{path}: ref #{index}"
        if not isinstance(ref, dict):
            raise ValueError(f"{where}: expected a dict, got {type(ref).__name__}")
        for name in ("ref_id", "ann_id", "image_id"):
            if not _is_int(ref.get(name)):
                raise ValueError(f"{where}: {name} must be an integer, got {ref.get(name)!r}")
        if not isinstance(ref.get("split"), str):
            raise ValueError(f"{where} (ref_id {ref['ref_id']}): split must be a string, got {ref.get('split')!r}")
        sentences = ref.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f"{where} (ref_id {ref['ref_id']}): sentences must be a non-empty list")
        for sentence in sentences:
            if not isinstance(sentence, dict) or not _is_int(sentence.get("sent_id")):
                raise ValueError(f"{where} (ref_id {ref['ref_id']}): a sentence without an integer sent_id")
            if not isinstance(sentence.get("sent"), str):
                raise ValueError(f"{where} (ref_id {ref['ref_id']}): sent_id {sentence['sent_id']} has no 'sent'")
    return refs


def load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """``instances.json`` as ``({image_id: image}, {ann_id: annotation})``.

    Raises:
        ValueError: missing file, invalid JSON, or images/annotations without their ids and sizes.
    """
    if not path.is_file():
        raise ValueError(f"{path}: missing; the refer API reads images and annotations from it")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a COCO object with an 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected a COCO object with an 'annotations' list")
    images, annotations = {}, {}
    for image in data["images"]:
        if not isinstance(image, dict) or not all(_is_int(image.get(k)) for k in ("id", "height", "width")):
            raise ValueError(f"{path}: an image without integer id/height/width: {str(image)[:120]}")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            raise ValueError(f"{path}: image {image['id']} has no file_name")
        if image["height"] < 1 or image["width"] < 1:
            raise ValueError(f"{path}: image {image['id']} has size {image['height']}x{image['width']}")
        images[image["id"]] = image
    for annotation in data["annotations"]:
        if not isinstance(annotation, dict) or not all(_is_int(annotation.get(k)) for k in ("id", "image_id")):
            raise ValueError(f"{path}: an annotation without integer id/image_id: {str(annotation)[:120]}")
        annotations[annotation["id"]] = annotation
    return images, annotations


def _image_sample(context: _Context, image: dict, refs: list[dict], annotations: dict[int, dict]) -> ShardSample:
    image_id, size = image["id"], (image["height"], image["width"])
    path = context.image_root / image["file_name"]
    member, data = _read_image(path, size)
    expressions, objects, ref_ids, sentence_ids = [], {}, [], {}
    for ref in refs:
        annotation = annotations.get(ref["ann_id"])
        where = f"{context.refs_path}: ref_id {ref['ref_id']}"
        if annotation is None:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} is not in {context.instances_path}")
        if annotation["image_id"] != image_id:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} is on image {annotation['image_id']}, not {image_id}")
        object_id = str(ref["ann_id"])
        if object_id not in objects:
            objects[object_id] = [_annotation_rle(annotation, size, context)]
        for sentence in ref["sentences"]:
            sent_id = str(sentence["sent_id"])
            if sent_id in sentence_ids:
                raise ValueError(f"{where}: sent_id {sent_id} repeats on image {image_id}")
            sentence_ids[sent_id] = {"ref_id": ref["ref_id"], "raw": sentence.get("raw", sentence["sent"])}
            expressions.append(Expression(sent_id, sentence["sent"], "referring", (object_id,)))
        ref_ids.append(
            {
                "ref_id": ref["ref_id"],
                "ann_id": ref["ann_id"],
                "category_id": ref.get("category_id"),
                "split": ref["split"],
                "sent_ids": [str(s["sent_id"]) for s in ref["sentences"]],
            }
        )
    key = make_key(context.dataset, context.split_by, context.split, str(image_id))
    ids = {"image_id": image_id, "split_by": context.split_by, "refs": ref_ids, "expressions": sentence_ids}
    meta = build_meta(
        key=key,
        media={"type": "image", "member": member},
        size=size,
        expressions=expressions,
        gt={"objects": objects, "ignore": None},
        source={"dataset": context.dataset, "split": context.split, "original_id": image["file_name"], "ids": ids},
    )
    return ShardSample(key=key, meta=meta, members={member: data})


def _annotation_rle(annotation: dict, size: tuple[int, int], context: _Context) -> dict:
    """One annotation's segmentation as one compressed RLE of the image size (LISA ``ValDataset.__getitem__``)."""
    segmentation = annotation.get("segmentation")
    where = f"{context.instances_path}: annotation {annotation['id']}"
    try:
        if isinstance(segmentation, list) and segmentation and all(isinstance(s, dict) for s in segmentation):
            # LISA also takes a list of RLE dicts (its grefcoco form), summed like polygons.
            return _merged([_rle_part(s, size) for s in segmentation], size, context.polygon_overlap)
        if isinstance(segmentation, list):
            if not all(isinstance(p, list) and len(p) % 2 == 0 and all(map(_is_number, p)) for p in segmentation):
                raise ValueError("polygons must be lists of x, y numbers")
            if context.polygon_overlap == "lisa" and len(segmentation) > 1:
                return _merged([rle.from_polygons([p], *size) for p in segmentation], size, "lisa")
            return rle.from_polygons(segmentation, *size)
        if isinstance(segmentation, dict):
            return rle.from_coco_segmentation(_rle_part(segmentation, size), *size)
    except ValueError as error:
        raise ValueError(f"{where}: bad segmentation ({error})") from None
    raise ValueError(f"{where}: segmentation must be polygons or an RLE, got {type(segmentation).__name__}")


def _merged(parts: list[dict], size: tuple[int, int], overlap: str) -> dict:
    """Several RLEs as one: their union, or (``"lisa"``) the pixels exactly one covers.

    LISA decodes the parts to ``(h, w, n)``, sums over n and casts to uint8; its metric counts only the value 1 as
    foreground.
    """
    if overlap == "union":
        return rle.encode(rle.union(parts, size))
    cover = sum(rle.decode(part, size).astype(np.int64) for part in parts)
    return rle.encode(cover == 1)


def _rle_part(segmentation: dict, size: tuple[int, int]) -> dict:
    """An RLE segmentation with its size checked against the image (compressed or uncompressed counts)."""
    if "size" not in segmentation or "counts" not in segmentation:
        raise ValueError(f"not a COCO RLE: {str(segmentation)[:80]}")
    if not isinstance(segmentation["size"], list) or segmentation["size"] != list(size):
        raise ValueError(f"RLE size {segmentation['size']} differs from the image size {list(size)}")
    if isinstance(segmentation["counts"], list) and sum(segmentation["counts"]) != size[0] * size[1]:
        raise ValueError(f"uncompressed RLE counts do not cover {size[0]}x{size[1]} pixels")
    return segmentation


def _read_image(path: Path, size: tuple[int, int]) -> tuple[str, bytes]:
    """The image file's member name and unchanged bytes, checked to decode at ``instances.json``'s size."""
    member = _IMAGE_MEMBERS.get(path.suffix.lower())
    if member is None:
        raise ValueError(f"{path}: not a .jpg/.jpeg/.png/.webp image")
    if not path.is_file():
        raise ValueError(f"{path}: missing image (pass image_root= if the COCO train2014 images live elsewhere)")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    if (height, width) != size:
        raise ValueError(f"{path}: is {height}x{width} but instances.json says {size[0]}x{size[1]}")
    return member, data


def _ref_ids(refs: list[dict]) -> list[int]:
    return [ref["ref_id"] for ref in refs]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
