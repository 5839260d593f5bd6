"""Ref-YouTube-VOS (metrics.md §3.2, §6.4) -> shard samples, one per video with all its expressions.

Layout (ReferFormer ``docs/data.md``, ``datasets/ytvos.py``, ``inference_ytvos.py``)::

    <root>/meta_expressions/{train,valid,test}/meta_expressions.json
        {"videos": {video: {"expressions": {exp_id: {"exp": str, "obj_id": str}}, "frames": [names]}}}
    <root>/<split>/JPEGImages/<video>/<frame>.jpg
    <root>/<split>/Annotations/<video>/<frame>.png     (train only: palette PNG, object = pixels == int(obj_id))
    <root>/train/meta.json                              {"videos": {video: {"objects": {obj_id: {"category"}}}}}

Ground truth: a split with an ``Annotations`` folder (train) gets ``gt.objects`` = {obj_id: one RLE per frame} for
every object an expression names; valid and test have none, so ``gt`` is null and expressions carry no object ids
(the original ``obj_id``, where the file has one, stays in ``source.ids``).

Absent objects: where a frame's PNG has no pixel equal to the object id, the mask is **null**, not an all-zero RLE.
Null is the contract's "absent from this frame", as in ReVOS/MeViS ``mask_dict.json``; the evaluation treats it as
an empty mask and so does ``Sample.target`` (a union skipping nulls), so nothing is lost and shards stay small.

ReVOS and MeViS extend this ``meta_expressions.json`` format: what the three converters share is in
``layouts.meta_expressions``.
"""

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .. import rle
from ..sample import Expression, ShardSample
from .meta_expressions import expression_text, load_json, load_videos, read_frames, video_sample

logger = logging.getLogger(__name__)

FORMAT = "refytvos"
# The competition's valid expression file also lists the 305 test videos; ReferFormer's inference_ytvos.py removes
# the keys of the test file and asserts 202 videos remain (metrics.md §3.2).
TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT = "train", "valid", "test"
# PIL modes whose pixel values are the object indices (ReferFormer opens with .convert('P'), a no-op on both).
_INDEX_MODES = ("P", "L")


def convert(
    root: str | Path, *, split: str = VALID_SPLIT, drop_test: bool = True, frames_split: str | None = None
) -> Iterator[ShardSample]:
    """Yield one sample per video of ``split``, sorted by video id.

    Args:
        root: the ``ref-youtube-vos`` folder.
        split: ``train``, ``valid`` (default) or ``test`` (the folder name under ``meta_expressions``).
        drop_test: for ``valid``, drop the videos also listed in ``meta_expressions/test`` (ReferFormer does, which
            leaves the 202 competition-valid videos). Needs the test file; ignored for other splits.
        frames_split: folder under ``root`` holding ``JPEGImages`` (default ``split``), e.g. ``valid`` for test
            videos distributed inside ``valid/JPEGImages``.

    Raises:
        ValueError: a missing or malformed file, naming it and the problem.
    """
    root = Path(root)
    meta_path = root / "meta_expressions" / split / "meta_expressions.json"
    videos = load_videos(meta_path)
    if split == VALID_SPLIT and drop_test:
        test_path = root / "meta_expressions" / TEST_SPLIT / "meta_expressions.json"
        if not test_path.is_file():
            raise ValueError(f"{test_path}: missing; it lists the test videos to drop from valid (or drop_test=False)")
        test_videos = load_videos(test_path)
        videos = {video: entry for video, entry in videos.items() if video not in test_videos}
        logger.info("refytvos valid: %d videos after dropping the test videos of %s", len(videos), test_path)
    image_root = root / (frames_split or split) / "JPEGImages"
    annotation_root = root / split / "Annotations"
    has_masks = annotation_root.is_dir()
    if split == TRAIN_SPLIT and not has_masks:
        raise ValueError(f"{annotation_root}: missing; Ref-YouTube-VOS train ships its masks there")
    categories = _load_categories(root / split / "meta.json")
    logger.info("refytvos %s: %d videos, masks %s", split, len(videos), "yes" if has_masks else "no")
    for video in sorted(videos):
        yield _video_sample(
            video,
            videos[video],
            split=split,
            meta_path=meta_path,
            image_root=image_root,
            annotation_root=annotation_root if has_masks else None,
            categories=categories.get(video),
        )


def _video_sample(
    video: str,
    entry: dict,
    *,
    split: str,
    meta_path: Path,
    image_root: Path,
    annotation_root: Path | None,
    categories: dict | None,
) -> ShardSample:
    names = entry["frames"]
    members, media, size = read_frames(image_root / video, names)
    where = f"{meta_path} video {video!r}"
    expressions, object_ids = [], []
    for exp_id, fields in entry["expressions"].items():
        text = expression_text(fields, f"{where} expression {exp_id!r}")
        targets = ()
        if annotation_root is not None:
            obj_id = fields.get("obj_id")
            if not isinstance(obj_id, (str, int)) or isinstance(obj_id, bool):
                raise ValueError(f"{where} expression {exp_id!r}: obj_id must be a string, got {obj_id!r}")
            targets = (str(obj_id),)
            object_ids += [o for o in targets if o not in object_ids]
        expressions.append(Expression(str(exp_id), text, "referring", targets))
    gt = None
    if annotation_root is not None:
        gt = {"objects": _object_masks(annotation_root / video, names, object_ids, size), "ignore": None}
    extra = {"categories": categories} if categories is not None else {}
    return video_sample(FORMAT, split, video, entry, members, media, size, expressions, gt, extra)


def _object_masks(folder: Path, names: list[str], object_ids: list[str], size: tuple[int, int]) -> dict:
    """{obj_id: [RLE or None per frame]} from one palette PNG per frame (ReferFormer: ``png == int(obj_id)``)."""
    values = {}
    for obj in object_ids:
        try:
            values[obj] = int(obj)
        except ValueError:
            raise ValueError(f"{folder}: object id {obj!r} is not an integer palette index") from None
        if not 1 <= values[obj] <= 255:
            raise ValueError(f"{folder}: object id {obj!r} is not a palette index in 1..255 (0 is background)")
    objects: dict[str, list] = {obj: [] for obj in object_ids}
    for name in names:
        labels = read_label_png(folder / f"{name}.png", size)
        for obj, value in values.items():
            mask = labels == value
            objects[obj].append(rle.encode(mask) if mask.any() else None)
    return objects


def read_label_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` object indices of an annotation PNG, checked against the frame size."""
    try:
        with Image.open(path) as image:
            if image.mode not in _INDEX_MODES:
                raise ValueError(f"{path}: annotation PNG mode {image.mode!r}, expected an indexed (P) image")
            labels = np.asarray(image)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing annotation PNG") from None
    except OSError as error:
        raise ValueError(f"{path}: unreadable annotation PNG ({error})") from None
    if labels.shape != tuple(size):
        raise ValueError(f"{path}: annotation is {labels.shape[0]}x{labels.shape[1]}, frames are {size[0]}x{size[1]}")
    return labels


def _load_categories(path: Path) -> dict[str, dict[str, str]]:
    """{video: {obj_id: category}} from ``<split>/meta.json`` when the split has one (train)."""
    if not path.is_file():
        return {}
    data = load_json(path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: expected {{'videos': {{video: {{'objects': ...}}}}}}")
    categories = {}
    for video, entry in videos.items():
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            raise ValueError(f"{path}: video {video!r} has no 'objects' mapping")
        categories[video] = {str(o): v.get("category") for o, v in objects.items() if isinstance(v, dict)}
    return categories
