"""Where an export puts things: image file names, copied frames, and JSON written as it streams.

Outputs go to a local path or any fsspec URL. A JSON document whose arrays could be large is written piece by
piece into local temporary files first and joined into the output at the end, so no array is ever held whole.
"""

import io
import json
import posixpath
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import PurePosixPath

import fsspec
import numpy as np
from PIL import Image

from .source import Frame, LabelledSample

VIDEO_FILES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def _safe(relative: str, fallback: str) -> str:
    """``relative`` if it is a plain relative path (no ``..``, not absolute), else ``fallback``."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if not parts or relative.startswith("/") or any(p in ("..", ".", "") for p in parts):
        return fallback
    return "/".join(parts)


def image_file(item: LabelledSample, frame: Frame) -> str:
    """The frame's file name relative to an image root: the dataset's own file for an image, and
    ``<video id>/<frame name>.<ext>`` for a video frame (JPEG for frames decoded from an mp4)."""
    media = item.sample.meta["media"]
    if media["type"] == "image":
        return _safe(item.original_id, f"{item.key}{PurePosixPath(media['member']).suffix}")
    video = _safe(item.original_id, item.key)
    stem, extension = posixpath.splitext(video)
    if extension.lower() in VIDEO_FILES:  # a video file's frames go in a folder named after it
        video = stem or item.key
    if media["type"] == "video":
        return f"{video}/{frame.name}.jpg"
    return f"{video}/{frame.name}{PurePosixPath(media['members'][frame.index]).suffix}"


def json_number(value: float | None) -> float | None:
    """``value`` as JSON can hold it: NaN (an undefined stability or track IoU) and None become null."""
    return None if value is None or value != value else float(value)


def parent(url: str) -> str:
    """The folder holding ``url`` (``.`` for a bare file name): where an export's images and QC sheet go."""
    return url.rsplit("/", 1)[0] if "/" in url else "."


def frame_files(item: LabelledSample, copy_images: bool) -> list[tuple[Frame, str]]:
    """Each frame of ``item`` with its file name as a JSON export names it: ``image_file``, under ``images/``
    beside the JSON when the export copies the frames (``copy_frames(item, parent(out), ...)``)."""
    prefix = "images/" if copy_images else ""
    return [(frame, prefix + image_file(item, frame)) for frame in item.frames]


def frame_bytes(item: LabelledSample, frame: Frame, decoded: list[np.ndarray] | None) -> bytes:
    """The frame as stored in the shard (image and frame members byte-identical), or JPEG of a decoded mp4 frame
    (``decoded``: the sample's frames, decoded once by the caller)."""
    media = item.sample.meta["media"]
    if media["type"] == "image":
        return item.sample.members[media["member"]]
    if media["type"] == "frames":
        return item.sample.members[media["members"][frame.index]]
    buffer = io.BytesIO()
    Image.fromarray(decoded[frame.index]).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def copy_frames(item: LabelledSample, root: str, names: Iterable[tuple[Frame, str]]) -> None:
    """Write each ``(frame, relative name)`` of ``item`` under ``root`` (local or fsspec URL)."""
    decoded = item.sample.frames() if item.sample.meta["media"]["type"] == "video" else None
    for frame, name in names:
        with open_output(f"{root.rstrip('/')}/{name}", "wb") as f:
            f.write(frame_bytes(item, frame, decoded))


def open_output(url: str, mode: str = "w"):
    """``url`` opened for writing (text ``w`` or binary ``wb``), its folders made first."""
    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    return fs.open(path, mode, **({"encoding": "utf-8"} if "b" not in mode else {}))


def write_text(url: str, text: str) -> None:
    with open_output(url) as f:
        f.write(text)


class JsonArray:
    """A JSON array written item by item to a local temporary file."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.count = 0

    def append(self, item) -> None:
        self.file.write(("," if self.count else "") + json.dumps(item, separators=(",", ":")))
        self.count += 1

    def copy_to(self, out) -> None:
        out.write("[")
        self.file.seek(0)
        shutil.copyfileobj(self.file, out)
        out.write("]")
        self.file.close()


def write_document(url: str, parts: list[tuple[str, object]]) -> None:
    """A JSON object of ``(key, value)`` in order, where a ``JsonArray`` value is streamed from its file."""
    with open_output(url) as out:
        out.write("{")
        for i, (key, value) in enumerate(parts):
            out.write(("," if i else "") + json.dumps(key) + ":")
            if isinstance(value, JsonArray):
                value.copy_to(out)
            else:
                out.write(json.dumps(value, separators=(",", ":")))
        out.write("}")


def write_array(url: str, array: JsonArray) -> None:
    with open_output(url) as out:
        array.copy_to(out)
