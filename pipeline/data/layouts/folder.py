"""An unlabeled corpus (a folder, fsspec URL or glob of images and mp4 videos) -> shard samples.

Input: a local folder or any fsspec URL (``s3://bucket/photos``, ``memory://corpus``) walked
recursively, a glob (``gs://bucket/photos/**/*.jpg``), or one file. Files ending in .jpg, .jpeg,
.png, .webp (images) and .mp4 (videos), in any letter case, become one sample each; other files,
and files or folders whose name starts with a dot (``.DS_Store``, ``._IMG.jpg``), are left out.
Samples come sorted by the path relative to the folder (or to the glob's fixed prefix), which is
their ``source.original_id``; the key is ``make_key`` of it. Images are copied byte-identical under
the member their decoded format names (jpg, png, webp). A video becomes its frames sampled at
``fps`` (``pipeline.data.video`` rule) as JPEG members, media "frames" named ``00000``, ``00001``, ...,
or with ``keep_mp4`` its own mp4 bytes as media "video". There is no ground truth (``gt`` null).

Every file is fully decoded during conversion, so a shard never holds pixels the reader cannot
decode. A file that cannot be read or decoded raises ``BadFile`` (a ``ValueError``) naming it; with
``skip_bad=True`` it is logged (warning) and left out instead.
"""

import io
import logging
import posixpath
from collections.abc import Iterator
from pathlib import Path

import fsspec
from PIL import Image

from ..reader import MAX_PIXELS
from ..sample import Expression, ShardSample, build_meta, frame_member, make_key
from ..video import encode_jpeg, iter_video_frames, native_fps

logger = logging.getLogger(__name__)

FORMAT = "folder"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
VIDEO_EXTENSIONS = ("mp4",)
# PIL's name of a decoded format -> the member extension (the schema's member names).
MEMBER_OF_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_GLOB_CHARACTERS = "*?["


class BadFile(ValueError):
    """A corpus file that cannot be read or decoded (what ``skip_bad`` skips)."""


def convert(
    root: str | Path,
    *,
    split: str = "unlabeled",
    fps: float | None = None,
    keep_mp4: bool = False,
    prompts: str | Path | None = None,
    dataset: str = "folder",
    skip_bad: bool = False,
) -> Iterator[ShardSample]:
    """One sample per image or video under ``root``, sorted by relative path.

    Args:
        root: a local folder, an fsspec URL of a folder or file, or a glob.
        split: the split recorded in ``source.split``.
        fps: frames per second sampled from videos; None keeps every frame (with ``keep_mp4``: the
            rate the video declares).
        keep_mp4: store each video as its original mp4 with ``fps`` instead of as JPEG frames.
        prompts: a text file (path or fsspec URL), one prompt per line; every sample gets the
            non-blank lines as expressions "0", "1", ... of kind "referring" with no object ids.
            Without it, samples have no expressions.
        dataset: the name recorded in ``source.dataset``.
        skip_bad: log and leave out files that do not decode, instead of raising.

    Raises:
        ValueError: nothing to convert, an unreadable prompts file, or (without ``skip_bad``) a file
            that does not decode.
    """
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not dataset or not split:
        raise ValueError(f"dataset and split must be non-empty, got {dataset!r} and {split!r}")
    expressions = read_prompts(prompts) if prompts is not None else []
    fs, files = list_media(str(root))
    for relative, path in files:
        try:
            sample = convert_file(fs, path, relative, expressions, split, dataset, fps, keep_mp4)
        except BadFile as error:
            if not skip_bad:
                raise
            logger.warning("skipping %s: %s", relative, error)
            continue
        yield sample


def list_media(root: str) -> tuple[fsspec.AbstractFileSystem, list[tuple[str, str]]]:
    """The filesystem and ``(relative path, filesystem path)`` of every image and video, sorted by relative path."""
    fs, path = fsspec.core.url_to_fs(root)
    if any(c in path for c in _GLOB_CHARACTERS):
        fixed = path[: min(path.index(c) for c in _GLOB_CHARACTERS if c in path)]
        base = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        found = [p for p, info in fs.glob(path, detail=True).items() if info["type"] == "file"]
    elif fs.isdir(path):
        base, found = path.rstrip("/"), fs.find(path)
    elif fs.isfile(path):
        base, found = posixpath.dirname(path), [path]
    else:
        raise ValueError(f"{root}: no such folder, file or glob match")
    files = []
    for full in found:
        relative = full[len(base) :].lstrip("/") if base and full.startswith(base) else full.lstrip("/")
        extension = relative.rsplit(".", 1)[-1].lower() if "." in posixpath.basename(relative) else ""
        if any(part.startswith(".") for part in relative.split("/")):
            logger.debug("leaving out hidden file %s", relative)
        elif extension in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            files.append((relative, full))
        else:
            logger.debug("leaving out %s: not an image or mp4 video", relative)
    if not files:
        raise ValueError(f"{root}: no image ({', '.join(IMAGE_EXTENSIONS)}) or video (mp4) found")
    return fs, sorted(files)


def read_prompts(path: str | Path) -> list[Expression]:
    """The non-blank lines of a prompts file as referring expressions "0", "1", ... without objects."""
    try:
        with fsspec.open(str(path), "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: prompts file not readable as UTF-8 text ({type(error).__name__}: {error})"
        ) from error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: the prompts file has no prompt")
    return [Expression(str(i), line, "referring") for i, line in enumerate(lines)]


def convert_file(
    fs,
    path: str,
    relative: str,
    expressions: list[Expression],
    split: str,
    dataset: str,
    fps: float | None,
    keep_mp4: bool,
) -> ShardSample:
    """One image or video file -> one sample (``BadFile`` naming the file if it cannot be read or decoded)."""
    try:
        data = fs.cat_file(path)
    except OSError as error:
        raise BadFile(f"{relative}: cannot be read ({type(error).__name__}: {error})") from error
    key = make_key(relative)
    source = {"dataset": dataset, "split": split, "original_id": relative}
    if relative.rsplit(".", 1)[-1].lower() in VIDEO_EXTENSIONS:
        members, media, size, ids = video_members(data, relative, fps, keep_mp4)
        source["ids"] = ids
    else:
        member, size = image_member(data, relative)
        members, media = {member: data}, {"type": "image", "member": member}
    meta = build_meta(key=key, media=media, size=size, expressions=expressions, gt=None, source=source)
    return ShardSample(key=key, meta=meta, members=members)


def image_member(data: bytes, name: str) -> tuple[str, tuple[int, int]]:
    """The member extension and ``(height, width)`` of an image, after checking that it decodes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in MEMBER_OF_FORMAT:
                raise BadFile(f"{name}: a {image.format} image, not JPEG, PNG or WebP")
            if image.width * image.height > MAX_PIXELS:
                raise BadFile(f"{name}: {image.width}x{image.height} pixels, over the reader's {MAX_PIXELS} bound")
            image.load()  # the whole file, so a truncated image fails now rather than at inference
            return MEMBER_OF_FORMAT[image.format], (image.height, image.width)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:  # PIL plugins raise SyntaxError too
        raise BadFile(f"{name}: not a decodable image ({type(error).__name__}: {error})") from error


def video_members(
    data: bytes, name: str, fps: float | None, keep_mp4: bool
) -> tuple[dict[str, bytes], dict, tuple[int, int], dict]:
    """Members, media, ``(height, width)`` and ``source.ids`` of a video, decoded once (frame by frame) to check it."""
    members, shapes = {}, set()
    try:  # the video module raises ValueError naming the video
        rate = fps if fps is not None or not keep_mp4 else native_fps(io.BytesIO(data), name=name)
        for index, frame in enumerate(iter_video_frames(io.BytesIO(data), rate, name=name)):
            shapes.add(frame.shape)
            if not keep_mp4:
                members[frame_member(index, "jpg")] = encode_jpeg(frame)
            count = index + 1
    except ValueError as error:
        raise BadFile(str(error)) from error
    if len(shapes) > 1:
        raise BadFile(f"video {name}: the frame size changes within the video ({sorted(shapes)})")
    ((height, width, _),) = shapes
    if keep_mp4:
        members, media = {"mp4": data}, {"type": "video", "member": "mp4", "fps": rate}
    else:
        media = {"type": "frames", "members": list(members), "frame_names": [f"{i:05d}" for i in range(count)]}
    return members, media, (height, width), {"fps": rate, "frames": count}
