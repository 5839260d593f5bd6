"""ReVOS and MeViS (metrics.md §2.1, §3.1, §6.2, §6.3) -> shard samples, one per video with all its expressions.

Both ship a ``meta_expressions`` file (the Ref-YouTube-VOS format plus ``anno_id`` lists) and a ``mask_dict.json``
``{str(anno_id): [COCO RLE or null, one per frame of the meta's frame list]}``; an expression's target is the union
of its ``anno_id`` objects (VISA ``tools/eval_revos.py``, MeViS ``tools/eval_mevis.py``).

ReVOS (cilinyan/ReVOS-api README)::

    <root>/JPEGImages/<video>/<frame>.jpg         video ids contain slashes, e.g. UVO/all/-fbscFfkh4M
    <root>/mask_dict.json                         train and valid objects together
    <root>/meta_expressions_{train,valid}_.json   (trailing underscore) {"videos": {video: {"frames", "height",
                                                  "width", "expressions": {exp_id: {"exp", "anno_id", "obj_id",
                                                  "type_id"}}}}}

    ``type_id`` gives the kind: 0 "referring", 1 "reasoning" (the two categories VISA's evaluation averages), 2
    "no-target" (VISA's unused ``is_nan`` set). A type-2 expression naming objects is refused as contradictory;
    a type-0/1 expression with no ``anno_id`` keeps its kind and an empty target, as the evaluation scores it.

MeViS (henghuiding/MeViS README)::

    <root>/<split>/JPEGImages/<video>/<frame>.jpg   split in train, valid_u, valid
    <root>/<split>/meta_expressions.json            {"videos": {video: {"frames", "expressions": {exp_id: {"exp",
                                                    "obj_id", "anno_id"}}}}}
    <root>/<split>/mask_dict.json                   not in valid (its GT is on the server): gt is null there

    Kind "referring" (motion referring expressions); an expression whose ``anno_id`` list is present and empty
    is "no-target". Without ground truth, expressions carry no object ids.

Samples: frames are the meta's frame list in its order (the mask_dict index is the position in that list), JPEG
bytes unchanged; ``gt.objects`` = {str(anno_id): RLEs} for every anno_id an expression names, taken from
``mask_dict.json`` unchanged when compressed (an uncompressed ``counts`` list is re-encoded; the decoded masks are
the same); ``source.ids["expressions"][exp_id]`` keeps every original field but the text (``obj_id``,
``anno_id``, ``type_id``).

Jobs call ``convert(root, split="valid")`` for ReVOS and ``convert_mevis(root, split="valid_u")`` (the same as
``convert(root, split=..., flavour="mevis")``) for MeViS; ``CONVERTERS`` maps both format names to their functions.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import rle
from ..sample import Expression, ShardSample
from .meta_expressions import expression_text, load_json, load_videos, read_frames, video_sample

logger = logging.getLogger(__name__)

FORMAT = "revos"
MEVIS_FORMAT = "mevis"
# VISA tools/eval_revos.py: is_referring = type_id 0, is_reason = 1, is_nan = 2 (defined, never scored).
REVOS_KINDS = {0: "referring", 1: "reasoning", 2: "no-target"}
# MeViS README: valid's GT is not released (scored on CodaLab), test is not released at all.
MEVIS_SPLITS_WITHOUT_GT = ("valid", "test")


@dataclass(frozen=True)
class _Layout:
    dataset: str
    meta_path: Path
    frames_root: Path
    mask_path: Path | None


def convert(
    root: str | Path, *, split: str = "valid", flavour: str = FORMAT, check_rles: bool = True
) -> Iterator[ShardSample]:
    """Yield one sample per video of ``split``, sorted by video id.

    Args:
        root: the ``ReVOS`` folder, or the ``mevis`` folder holding the split folders.
        split: ReVOS ``train`` or ``valid`` (default; any ``meta_expressions_<split>_.json``); MeViS ``train``,
            ``valid_u`` (``convert_mevis``'s default: the split with public GT) or ``valid``.
        flavour: ``"revos"`` or ``"mevis"``: which of the two layouts ``root`` is.
        check_rles: verify every compressed RLE of ``mask_dict.json`` (its runs must cover the frame exactly).
            pycocotools does not check short counts and decodes them to garbage; the check is pure Python, about
            0.4 microseconds per counts character (0.4 ms for a 720p ellipse).

    Raises:
        ValueError: a missing or malformed file, naming it and the problem.
    """
    root = Path(root)
    if flavour == FORMAT:
        layout = _Layout(
            FORMAT, root / f"meta_expressions_{split}_.json", root / "JPEGImages", root / "mask_dict.json"
        )
    elif flavour == MEVIS_FORMAT:
        mask_path = root / split / "mask_dict.json"
        if not mask_path.is_file():
            if split not in MEVIS_SPLITS_WITHOUT_GT:
                raise ValueError(f"{mask_path}: missing; MeViS {split} ships its masks there")
            mask_path = None
        layout = _Layout(MEVIS_FORMAT, root / split / "meta_expressions.json", root / split / "JPEGImages", mask_path)
    else:
        raise ValueError(f"unknown flavour {flavour!r}: expected {FORMAT!r} or {MEVIS_FORMAT!r}")
    videos = load_videos(layout.meta_path)
    mask_dict = None
    if layout.mask_path is not None:
        mask_dict = load_json(layout.mask_path)
        if not isinstance(mask_dict, dict):
            raise ValueError(f"{layout.mask_path}: expected {{anno_id: [RLE or null per frame]}}")
    logger.info(
        "%s %s: %d videos, masks %s", layout.dataset, split, len(videos), "yes" if mask_dict is not None else "no"
    )
    for video in sorted(videos):
        yield _video_sample(layout, split, video, videos[video], mask_dict, check_rles)


def convert_mevis(root: str | Path, *, split: str = "valid_u", check_rles: bool = True) -> Iterator[ShardSample]:
    """MeViS: ``convert(root, split=split, flavour="mevis")``; see ``convert`` for the arguments."""
    return convert(root, split=split, flavour=MEVIS_FORMAT, check_rles=check_rles)


CONVERTERS: dict[str, Callable[..., Iterator[ShardSample]]] = {FORMAT: convert, MEVIS_FORMAT: convert_mevis}


def _video_sample(
    layout: _Layout, split: str, video: str, entry: dict, mask_dict: dict | None, check_rles: bool
) -> ShardSample:
    where = f"{layout.meta_path} video {video!r}"
    names = entry["frames"]
    size = _meta_size(entry, where)
    size_from = f"{layout.meta_path.name} height/width" if size else "the first frame"
    members, media, size = read_frames(layout.frames_root / video, names, size, size_from)
    expressions, anno_ids = [], []
    for exp_id, fields in entry["expressions"].items():
        expression = _expression(layout.dataset, str(exp_id), fields, f"{where} expression {exp_id!r}", mask_dict)
        expressions.append(expression)
        anno_ids += [a for a in expression.object_ids if a not in anno_ids]
    gt = None
    if mask_dict is not None:
        objects = {a: _object_rles(mask_dict, a, len(names), size, layout.mask_path, check_rles) for a in anno_ids}
        gt = {"objects": objects, "ignore": None}
    return video_sample(layout.dataset, split, video, entry, members, media, size, expressions, gt)


def _expression(dataset: str, exp_id: str, fields: object, where: str, mask_dict: dict | None) -> Expression:
    text = expression_text(fields, where)
    anno = _id_list(fields, "anno_id", where, required=dataset == FORMAT or mask_dict is not None)
    obj = _id_list(fields, "obj_id", where, required=dataset == FORMAT)
    if anno is not None and obj is not None and len(anno) != len(obj):
        raise ValueError(f"{where}: {len(anno)} anno_id for {len(obj)} obj_id")
    if dataset == FORMAT:
        type_id = fields.get("type_id")
        if not isinstance(type_id, int) or isinstance(type_id, bool) or type_id not in REVOS_KINDS:
            raise ValueError(f"{where}: type_id must be one of {sorted(REVOS_KINDS)}, got {type_id!r}")
        kind = REVOS_KINDS[type_id]
        if kind == "no-target" and anno:
            raise ValueError(f"{where}: type_id 2 (no target) but anno_id names objects {anno}")
    else:
        kind = "no-target" if anno == [] else "referring"
    object_ids = tuple(str(a) for a in anno) if mask_dict is not None else ()
    return Expression(exp_id, text, kind, object_ids)


def _id_list(fields: dict, name: str, where: str, *, required: bool) -> list | None:
    value = fields.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: {name} must be a list of ids, got {value!r}")
    return value


def _meta_size(entry: dict, where: str) -> tuple[int, int] | None:
    """ReVOS's meta ``height``/``width`` (MeViS has none: the first frame decides)."""
    height, width = entry.get("height"), entry.get("width")
    if height is None and width is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ValueError(f"{where}: height/width must be positive integers, got {height!r}/{width!r}")
    return height, width


def _object_rles(
    mask_dict: dict, anno_id: str, frames: int, size: tuple[int, int], path: Path, check: bool
) -> list[dict | None]:
    rles = mask_dict.get(anno_id)
    if rles is None:
        raise ValueError(f"{path}: no masks for anno_id {anno_id}")
    if not isinstance(rles, list) or len(rles) != frames:
        count = len(rles) if isinstance(rles, list) else type(rles).__name__
        raise ValueError(f"{path}: anno_id {anno_id} has {count} masks for {frames} frames")
    return [rle.normalise(r, size, f"{path}: anno_id {anno_id} frame {t}", check=check) for t, r in enumerate(rles)]
