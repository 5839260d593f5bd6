"""What the ``meta_expressions.json`` converters share (Ref-YouTube-VOS, and ReVOS and MeViS, which extend its
format): reading the file, the frames, an expression's text, and building a video's sample."""

import io
import json
from pathlib import Path

from PIL import Image

from ..sample import Expression, ShardSample, build_meta, frame_member, make_key

FRAME_EXTENSION = "jpg"


def expression_text(fields: object, where: str) -> str:
    if not isinstance(fields, dict) or not isinstance(fields.get("exp"), str):
        raise ValueError(f"{where}: expected an object with an 'exp' string, got {str(fields)[:80]}")
    return fields["exp"]


def load_json(path: Path) -> object:
    """Parse a JSON file, raising ``ValueError`` naming the file when it is missing or invalid."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def load_videos(path: Path) -> dict[str, dict]:
    """The ``videos`` of a ``meta_expressions`` file, each checked to have ``frames`` and ``expressions``."""
    data = load_json(path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: expected {{'videos': {{video: {{'frames': [...], 'expressions': {{...}}}}}}}}")
    for video, entry in videos.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: video {video!r} is not an object")
        frames = entry.get("frames")
        if not isinstance(frames, list) or not frames or not all(isinstance(f, str) and f for f in frames):
            raise ValueError(f"{path}: video {video!r} needs a non-empty 'frames' list of names")
        if len(set(frames)) != len(frames):
            raise ValueError(f"{path}: video {video!r} lists a frame twice")
        if not isinstance(entry.get("expressions"), dict):
            raise ValueError(f"{path}: video {video!r} needs an 'expressions' object")
    return videos


def read_frames(
    folder: Path, names: list[str], size: tuple[int, int] | None = None, size_from: str = "the first frame"
) -> tuple[dict[str, bytes], dict, tuple[int, int]]:
    """The JPEG frames ``<folder>/<name>.jpg``, bytes unchanged, as members, ``media`` and ``(h, w)``.

    Every frame's header is read, so a missing, unreadable or differently sized frame fails here rather than in
    the reader; ``size`` (e.g. the meta's height/width, described by ``size_from`` in errors) is checked when
    given, else the first frame's is used.
    """
    members: dict[str, bytes] = {}
    for index, name in enumerate(names):
        path = folder / f"{name}.{FRAME_EXTENSION}"
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except FileNotFoundError:
            raise ValueError(f"{path}: missing frame") from None
        except OSError as error:
            raise ValueError(f"{path}: unreadable frame ({error})") from None
        if size is None:
            size = (height, width)
        if (height, width) != tuple(size):
            raise ValueError(f"{path}: frame is {height}x{width}, expected {size[0]}x{size[1]} ({size_from})")
        members[frame_member(index, FRAME_EXTENSION)] = data
    media = {"type": "frames", "members": list(members), "frame_names": list(names)}
    return members, media, (int(size[0]), int(size[1]))


def video_sample(
    dataset: str,
    split: str,
    video: str,
    entry: dict,
    members: dict[str, bytes],
    media: dict,
    size: tuple[int, int],
    expressions: list[Expression],
    gt: dict | None,
    extra_ids: dict | None = None,
) -> ShardSample:
    """A video's sample: every original field of its expressions but the text kept in ``source.ids``."""
    ids = {
        "expressions": {str(e): {k: v for k, v in f.items() if k != "exp"} for e, f in entry["expressions"].items()},
        **(extra_ids or {}),
    }
    key = make_key(video)
    meta = build_meta(
        key=key,
        media=media,
        size=size,
        expressions=expressions,
        gt=gt,
        source={"dataset": dataset, "split": split, "original_id": video, "ids": ids},
    )
    return ShardSample(key=key, meta=meta, members=members)
