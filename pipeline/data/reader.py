"""Streaming samples back from shards on any fsspec filesystem, with bad input as error records.

A source is a shard URL, a glob, a brace pattern (``out/shard-{00000..00009}.tar``), a
``manifest.json`` or a list of those; local paths and every fsspec protocol (s3://, gs://, http(s)://,
memory://) work, since shards are opened with fsspec and only parsed by webdataset's tar iterators
(webdataset's own ``gopen`` knows no s3; ray.md §5.4). Pixels and masks decode lazily. A corrupt
sample becomes a ``ReadError`` (shard, key, stage, message) and the stream goes on.
"""

import io
import json
import logging
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import braceexpand
import fsspec
import numpy as np
from PIL import Image
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from . import rle
from .sample import Expression, SampleError, expressions_of, validate
from .writer import MANIFEST as MANIFEST_NAME

logger = logging.getLogger(__name__)

# Extensions that would be unpickled by a naive decoder: never opened, the sample is refused.
PICKLE_EXTENSIONS = ("pyd", "pickle", "pkl", "pth", "pt", "npz", "npy", "joblib", "ckpt")
# A decompression bomb is refused from its header, before any pixel is decoded.
MAX_PIXELS = 8192 * 8192


@dataclass
class ReadError:
    """A sample (or the rest of a shard) that could not be read."""

    shard: str
    key: str | None
    stage: str
    message: str


@dataclass
class Sample:
    """One validated sample; pixels and masks are decoded on demand."""

    key: str
    shard: str
    meta: dict
    members: dict[str, bytes] = field(repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.meta["size"])

    @property
    def expressions(self) -> list[Expression]:
        return expressions_of(self.meta)

    @property
    def is_video(self) -> bool:
        return self.meta["media"]["type"] != "image"

    @property
    def frame_names(self) -> list[str]:
        media = self.meta["media"]
        return media["frame_names"] if media["type"] == "frames" else ["00000"] * (media["type"] == "image")

    def frames(self) -> list[np.ndarray]:
        """Every frame as ``(H, W, 3)`` RGB uint8."""
        media = self.meta["media"]
        if media["type"] == "video":
            from .video import decode_video

            return decode_video(self.members[media["member"]], media["fps"])
        names = media["members"] if media["type"] == "frames" else [media["member"]]
        return [decode_image(self.members[name]) for name in names]

    def mask(self, object_id: str, frame: int = 0) -> np.ndarray | None:
        """Ground truth of one object on one frame (None where it is absent or there is no ground truth)."""
        gt = self.meta["gt"]
        if gt is None:
            return None
        encoded = gt["objects"][object_id][frame]
        return None if encoded is None else rle.decode(encoded, self.size)

    def target(self, expression: Expression, frame: int = 0) -> np.ndarray | None:
        """The union of the expression's objects on a frame (empty for no-target), or None without ground truth."""
        gt = self.meta["gt"]
        if gt is None:
            return None
        return rle.union([gt["objects"][o][frame] for o in expression.object_ids], self.size)

    def ignore(self, frame: int = 0) -> np.ndarray | None:
        gt = self.meta["gt"]
        if gt is None or gt.get("ignore") is None or gt["ignore"][frame] is None:
            return None
        return rle.decode(gt["ignore"][frame], self.size)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> ``(H, W, 3)`` RGB uint8."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def shard_urls(source: str | list[str]) -> list[str]:
    """Expand a source (URL, glob, brace pattern, manifest, a folder, or a list of them) into shard URLs, in order.

    A folder stands for its ``manifest.json`` if it has one, else for its ``*.tar`` files.
    """
    return [url for url, _ in _expand(source)]


def shard_keys(source: str | list[str]) -> dict[str, list[str]]:
    """Each shard's sample keys, in order: from the manifest when it lists them, else from the tar headers."""
    return {url: entry["keys"] for url, entry in shard_entries(source).items()}


def shard_entries(source: str | list[str]) -> dict[str, dict]:
    """Each shard's manifest entry (samples, frames, expressions, expression_frames where the manifest has them)
    with its sample keys in order: from the manifest when it lists them, else from the tar headers.

    A header scan reads no member data on a seekable file (tarfile seeks over it). A shard that cannot be
    scanned to its end gives the keys before the damage; reading it reports the damage.
    """
    entries = _expand(source)
    missing = [url for url, entry in entries if entry is None or "keys" not in entry]
    with ThreadPoolExecutor(max_workers=8) as pool:  # I/O bound: object stores answer slowly, not heavily
        scanned = dict(zip(missing, pool.map(_scan_keys, missing), strict=True))
    return {
        url: {**(entry or {}), "keys": list(entry["keys"]) if url not in scanned else scanned[url]}
        for url, entry in entries
    }


def repeated_keys(keys: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """For each shard (in order), its keys that an earlier shard already holds, each mapped to that shard.

    The first shard holding a key owns it, so which copy is kept never depends on scheduling.
    """
    owner: dict[str, str] = {}
    out: dict[str, dict[str, str]] = {}
    for url, shard in keys.items():
        out[url] = {}
        for key in dict.fromkeys(shard):  # repeats within a shard are the reader's to report
            if key in owner:
                out[url][key] = owner[key]
            else:
                owner[key] = url
    return out


def _expand(source: str | list[str]) -> list[tuple[str, dict | None]]:
    """Shard URLs with their manifest entries (None for shards not named by a manifest)."""
    if isinstance(source, (list, tuple)):
        return [pair for item in source for pair in _expand(item)]
    out = []
    for pattern in braceexpand.braceexpand(source):
        if pattern.endswith(MANIFEST_NAME):
            with fsspec.open(pattern, "r") as f:
                manifest = json.load(f)
            base = pattern[: -len(MANIFEST_NAME)]
            out += [(base + shard["uri"], shard) for shard in manifest["shards"]]
        elif any(c in pattern for c in "*?["):
            fs, path = fsspec.core.url_to_fs(pattern)
            local = fs.protocol in ("file", "local") or "file" in fs.protocol
            out += [(p if local else fs.unstrip_protocol(p), None) for p in sorted(fs.glob(path))]
        else:
            fs, path = fsspec.core.url_to_fs(pattern)
            if fs.isdir(path):  # a folder: its manifest if it has one, else its shards
                inner = pattern.rstrip("/")
                manifest = f"{inner}/{MANIFEST_NAME}"
                out += _expand(manifest if fs.exists(f"{path.rstrip('/')}/{MANIFEST_NAME}") else f"{inner}/*.tar")
            else:
                out.append((pattern, None))
    return out


def _scan_keys(url: str) -> list[str]:
    keys: list[str] = []
    try:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=StoreReads(f), mode="r:") as tar:
            for member in tar:
                key = base_plus_ext(member.name)[0] if member.isreg() else None
                # webdataset's grouping: consecutive members with one prefix are one sample.
                if key is not None and not _is_meta(member.name) and (not keys or keys[-1] != key):
                    keys.append(key)
    except (tarfile.TarError, OSError, EOFError) as error:
        logger.warning("shard %s: keys scanned up to damage (%s)", url, error)
    return keys


def _is_meta(name: str) -> bool:
    return name.startswith("__") or "/__" in name


def read_samples(source: str | list[str]) -> Iterator[Sample | ReadError]:
    """Every sample of every shard of ``source``, in order; bad ones as ``ReadError``."""
    for url in shard_urls(source):
        yield from read_shard(url)


class StoreReads:
    """A shard's byte stream whose read failures are all ``OSError``: a store's client raises types of its own for
    some (aiohttp's ``ClientPayloadError`` when a connection is cut mid-body) that would otherwise pass for a bug."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except OSError:
            raise
        except Exception as error:  # whatever the client raises while reading is the store's
            raise ConnectionError(f"{type(error).__name__}: {error}") from error

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    def seekable(self) -> bool:
        return self.stream.seekable()


class ShardUnreadable(OSError):
    """A shard that could not be opened or read to its end for a reason outside its bytes (missing, permission,
    a dropped connection, a timeout, a store's 5xx): the run retries it, then leaves it uncommitted."""


def read_shard(url: str) -> Iterator[Sample | ReadError]:
    """The samples of one shard, bad ones as ``ReadError``.

    A key that repeats within the shard is refused after its first sample. A truncated or corrupt tar
    ends the shard with one error record, keyed by the sample whose members were being read (that sample
    is lost; the samples before it were yielded). A shard that cannot be opened or read (an ``OSError``)
    raises ``ShardUnreadable`` instead: that is not the data's fault, and it must not be committed as done.
    """
    reading: list[str | None] = [None]  # key of the last member read: the sample being assembled
    seen: set[str] = set()

    def members(stream) -> Iterator[dict]:
        for member in tar_file_expander([{"url": url, "stream": stream}]):
            if "fname" in member:  # not the empty end-of-tar marker
                reading[0] = base_plus_ext(member["fname"])[0]
            yield member

    try:
        with fsspec.open(url, "rb") as stream:
            for raw in group_by_keys(members(StoreReads(stream))):
                key = raw["__key__"]
                if key in seen:
                    yield ReadError(url, key, "key", f"key {key!r} repeats within the shard; the first sample is kept")
                    continue
                seen.add(key)
                yield check_sample(url, raw)
    except (tarfile.TarError, EOFError, ValueError) as error:
        # webdataset appends " @ <stream repr>" to the reason; the shard URL says more.
        reason = str(error.args[0]).split(" @ ")[0] if error.args else ""
        yield ReadError(
            url,
            reading[0],
            "tar",
            f"truncated or corrupt tar after {len(seen)} samples ({type(error).__name__}: {reason})",
        )
    except OSError as error:  # missing, permission, connection reset, timeout, a store's 5xx: not the data's fault
        raise ShardUnreadable(f"{url}: {type(error).__name__}: {error} (after {len(seen)} samples)") from error


def check_sample(shard: str, raw: dict) -> Sample | ReadError:
    """Validate one raw sample: no pickles, metadata against the contract, members present, image headers sane."""
    key = raw["__key__"]
    members = {k: v for k, v in raw.items() if not k.startswith("__")}
    pickled = sorted(k for k in members if k.rsplit(".", 1)[-1] in PICKLE_EXTENSIONS)
    if pickled:
        return ReadError(shard, key, "member", f"pickle members {pickled} refused: they can run code when loaded")
    if "json" not in members:
        return ReadError(shard, key, "metadata", "no json metadata member")
    try:
        meta = json.loads(members.pop("json").decode("utf-8"))
        validate(meta)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return ReadError(shard, key, "metadata", f"metadata is not valid JSON: {error}")
    except SampleError as error:
        return ReadError(shard, key, "metadata", str(error))
    if meta["key"] != key:
        return ReadError(shard, key, "metadata", f"metadata key {meta['key']!r} differs from the member key")
    media = meta["media"]
    names = media["members"] if media["type"] == "frames" else [media["member"]]
    missing = [n for n in names if n not in members]
    if missing:
        return ReadError(shard, key, "member", f"media members {missing[:5]} missing")
    if media["type"] != "video":
        for name in names:
            problem = check_image_header(members[name], tuple(meta["size"]))
            if problem:
                return ReadError(shard, key, "image", f"member {name}: {problem}")
    return Sample(key=key, shard=shard, meta=meta, members=members)


def check_image_header(data: bytes, size: tuple[int, int]) -> str | None:
    """Why an image member is unusable, from its header alone (None if it is fine)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError, ValueError) as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    if width * height > MAX_PIXELS:
        return f"declares {width}x{height} pixels, over the {MAX_PIXELS}-pixel bound"
    if (height, width) != size:
        return f"is {height}x{width} but the metadata says {size[0]}x{size[1]}"
    return None
