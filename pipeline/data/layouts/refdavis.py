"""Ref-DAVIS17 (DAVIS 2017 unsupervised masks + the MPI referring expressions) -> shard samples.

Layout (metrics.md §6.1, §6.5)::

    <root>/DAVIS/JPEGImages/480p/<seq>/<frame>.jpg
    <root>/DAVIS/Annotations_unsupervised/480p/<seq>/<frame>.png   indexed: object ids, 0 background, 255 void
    <root>/DAVIS/ImageSets/2017/{train,val}.txt
    <root>/davis_text_annotations/Davis17_annot{1,2}.txt, Davis17_annot{1,2}_full_video.txt

One sample per sequence with every expression, numbered as ReferFormer's
``tools/data/convert_davis_to_ytvos.py`` numbers them (wjn922/ReferFormer@06fc218): per video each of
the four files' entries are stably sorted by ``obj_id`` as a string, the four lists are zipped (entries
past the shortest list are dropped, as there) and each zipped group gives four consecutive ids in the
order annotator-1 first-frame, annotator-1 full-video, annotator-2 first-frame, annotator-2 full-video.
So id ``i`` belongs to ReferFormer's output folder ``anno_{i % 4}`` (metrics.md §3.3).
``source.ids["expressions"][id]`` records that annotator, first-frame/full-video, the set 0-3, and the
text file and line. Ground truth: per object id the per-frame mask ``png == id`` (null on frames where
the object has no pixel); ``ignore`` = the per-frame void (255) mask, null on frames without void, and
null for the whole sequence when it has none.
"""

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import rle
from ..sample import Expression, ShardSample, build_meta, frame_member, make_key

logger = logging.getLogger(__name__)

FORMAT = "refdavis"
DATASET = "refdavis"
SPLITS = ("train", "val")
VOID = 255
# (file, annotator, annotation, encoding) in ReferFormer's numbering order; annotator-2 files are latin-1.
TEXT_FILES = (
    ("Davis17_annot1.txt", 1, "first-frame", "utf-8"),
    ("Davis17_annot1_full_video.txt", 1, "full-video", "utf-8"),
    ("Davis17_annot2.txt", 2, "first-frame", "latin-1"),
    ("Davis17_annot2_full_video.txt", 2, "full-video", "latin-1"),
)
# Video names misspelt in the text files, fixed as ReferFormer's converter fixes them.
MISSPELT = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}


@dataclass(frozen=True)
class TextEntry:
    """One line of a text annotation file."""

    obj_id: str
    text: str
    file: str
    line: int


def convert(
    root: str | Path,
    *,
    split: str = "val",
    davis_root: str | Path | None = None,
    text_root: str | Path | None = None,
) -> Iterator[ShardSample]:
    """The samples of one Ref-DAVIS17 split, sorted by sequence name.

    Args:
        root: the folder holding ``DAVIS/`` and ``davis_text_annotations/``.
        split: ``train`` (60 sequences) or ``val`` (30), as listed in ``ImageSets/2017/<split>.txt``.
        davis_root: the DAVIS 2017 folder (default ``<root>/DAVIS``).
        text_root: the folder of the four ``Davis17_annot*.txt`` files (default ``<root>/davis_text_annotations``).

    Raises:
        ValueError: an unknown split, a missing or malformed file, frames and masks that disagree.
    """
    if split not in SPLITS:
        raise ValueError(f"Ref-DAVIS17 split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    davis = Path(davis_root) if davis_root is not None else root / "DAVIS"
    texts = Path(text_root) if text_root is not None else root / "davis_text_annotations"
    sequences = read_split(davis / "ImageSets" / "2017" / f"{split}.txt")
    annotations = [read_text_file(texts / name, encoding) for name, _, _, encoding in TEXT_FILES]
    for sequence in sorted(sequences):
        lists = []
        for (name, _, _, _), videos in zip(TEXT_FILES, annotations, strict=True):
            if sequence not in videos:
                raise ValueError(f"{texts / name}: no expression for sequence {sequence!r} of split {split}")
            lists.append(videos[sequence])
        yield convert_sequence(davis, sequence, split, lists)


def read_split(path: Path) -> list[str]:
    """The sequence names of an ``ImageSets/2017/<split>.txt`` file."""
    if not path.is_file():
        raise ValueError(f"{path}: DAVIS split file not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: the split lists no sequence")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a sequence is listed twice")
    return names


def read_text_file(path: Path, encoding: str) -> dict[str, list[TextEntry]]:
    """Video -> its entries stably sorted by ``obj_id`` as a string (ReferFormer's ``read_expressions_from_txt``).

    A line is ``<video> <obj_id> "<expression>"``. As in ReferFormer, the expression is the rest of the
    line with runs of whitespace joined by one space and its first and last characters (the quotes)
    removed; misspelt video names are fixed.
    """
    if not path.is_file():
        raise ValueError(f"{path}: Ref-DAVIS17 text annotation file not found")
    try:
        # readlines, as ReferFormer: universal newlines only (str.splitlines would also cut at latin-1 0x85)
        with path.open("r", encoding=encoding) as f:
            lines = f.readlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not {encoding} text ({error})") from error
    videos: dict[str, list[TextEntry]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue  # ReferFormer would crash on a blank line; a trailing one is harmless here
        if len(fields) < 3:
            raise ValueError(f"{path}:{number}: expected '<video> <obj_id> \"<expression>\"', got {line.strip()!r}")
        video, obj_id = MISSPELT.get(fields[0], fields[0]), fields[1]
        if not obj_id.isdigit() or not 0 < int(obj_id) < VOID:
            raise ValueError(f"{path}:{number}: object id {obj_id!r} is not an integer in 1..254")
        rest = " ".join(fields[2:])
        if len(rest) < 2 or rest[0] != '"' or rest[-1] != '"':
            logger.warning(
                "%s:%d: expression %r is not quoted; its first and last characters are cut", path, number, rest
            )
        videos.setdefault(video, []).append(TextEntry(obj_id, rest[1:-1], path.name, number))
    for entries in videos.values():
        entries.sort(key=lambda e: e.obj_id)  # stable, as Python's sorted in ReferFormer
    return videos


def number_expressions(lists: list[list[TextEntry]]) -> tuple[list[Expression], dict[str, dict]]:
    """ReferFormer's numbering of one video's four entry lists: expressions and their per-id origin."""
    expressions, origins = [], {}
    # zip: entries beyond the shortest list are dropped, as ReferFormer does
    for group in zip(*lists, strict=False):
        for anno_set, (entry, (_, annotator, annotation, _)) in enumerate(zip(group, TEXT_FILES, strict=True)):
            exp_id = str(len(expressions))
            expressions.append(Expression(exp_id, entry.text, "referring", (str(int(entry.obj_id)),)))
            origins[exp_id] = {
                "annotator": annotator,
                "annotation": annotation,
                "anno_set": anno_set,
                "obj_id": entry.obj_id,
                "file": entry.file,
                "line": entry.line,
            }
    return expressions, origins


def convert_sequence(davis: Path, sequence: str, split: str, lists: list[list[TextEntry]]) -> ShardSample:
    """One sequence: its original JPEG frames, masks from the unsupervised annotations, its expressions."""
    if len({len(entries) for entries in lists}) > 1:
        logger.warning(
            "sequence %s: the text files give %s expressions; the ones beyond %d are dropped (zip, as ReferFormer)",
            sequence,
            [len(entries) for entries in lists],
            min(len(entries) for entries in lists),
        )
    expressions, origins = number_expressions(lists)
    frame_dir = davis / "JPEGImages" / "480p" / sequence
    mask_dir = davis / "Annotations_unsupervised" / "480p" / sequence
    frame_paths = sorted(frame_dir.glob("*.jpg"))
    if not frame_paths:
        raise ValueError(f"{frame_dir}: no JPEG frames for sequence {sequence!r}")
    members, size = {}, None
    for index, path in enumerate(frame_paths):
        data = path.read_bytes()
        frame_size = image_size(path, data)
        if size is not None and frame_size != size:
            raise ValueError(f"{path}: frame is {frame_size[0]}x{frame_size[1]}, the first frame {size[0]}x{size[1]}")
        size = frame_size
        members[frame_member(index, "jpg")] = data
    labels = [read_labels(mask_dir / f"{path.stem}.png", size) for path in frame_paths]
    object_ids = sorted({int(v) for frame in labels for v in np.unique(frame)} - {0, VOID})
    missing = sorted({o for e in expressions for o in e.object_ids} - {str(o) for o in object_ids}, key=int)
    if missing:
        logger.warning("sequence %s: objects %s of the expressions have no pixel in any frame", sequence, missing)
    objects = {str(o): [mask_or_none(frame == o) for frame in labels] for o in object_ids}
    objects |= {o: [None] * len(labels) for o in missing}
    void = [mask_or_none(frame == VOID) for frame in labels]
    key = make_key(sequence)
    meta = build_meta(
        key=key,
        media={"type": "frames", "members": list(members), "frame_names": [p.stem for p in frame_paths]},
        size=size,
        expressions=expressions,
        gt={"objects": objects, "ignore": void if any(v is not None for v in void) else None},
        source={"dataset": DATASET, "split": split, "original_id": sequence, "ids": {"expressions": origins}},
    )
    return ShardSample(key=key, meta=meta, members=members)


def image_size(path: Path, data: bytes) -> tuple[int, int]:
    """``(height, width)`` of a JPEG frame, fully decoded so a truncated file fails here and not at inference."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.height, image.width
    except (OSError, Image.DecompressionBombError, ValueError) as error:
        raise ValueError(f"{path}: not a readable image ({type(error).__name__}: {error})") from error


def read_labels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """An indexed annotation PNG as its ``(H, W)`` uint8 object ids."""
    if not path.is_file():
        raise ValueError(f"{path}: annotation PNG missing for this frame")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(f"{path}: annotation must be an indexed (P or L) PNG, got mode {image.mode}")
            labels = np.asarray(image)
    except OSError as error:
        raise ValueError(f"{path}: not a readable PNG ({type(error).__name__}: {error})") from error
    if labels.shape != tuple(size):
        raise ValueError(f"{path}: annotation is {labels.shape[0]}x{labels.shape[1]}, the frame {size[0]}x{size[1]}")
    return labels


def mask_or_none(mask: np.ndarray) -> dict | None:
    """The RLE of a mask, or None where it has no pixel (the schema's 'absent on this frame')."""
    return rle.encode(mask) if mask.any() else None
