"""Writing samples into WebDataset shards on any fsspec filesystem, with a manifest beside them.

Shards are ``{prefix}-{index:05d}.tar``, bounded in samples and bytes, written to a hidden temporary
name and renamed when complete, and reproducible: fixed member metadata (mtime, owner, mode) and
sorted JSON, so the same input gives byte-identical shards. ``manifest.json`` lists every shard with
its sample count, size, sha256 and sample keys (so a run can find keys repeated across shards without
opening them); it is written last.
"""

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import fsspec
import webdataset as wds

from .sample import SCHEMA_VERSION, ShardSample, validate

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Fixed tar member metadata: the same samples must give the same bytes (ray.md §5.3).
TAR_MTIME = 0.0
TAR_USER = "evtp"
# A tar member costs its bytes rounded up to 512 plus a 512-byte header.
TAR_BLOCK = 512


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a manifest: its name relative to the manifest, samples, bytes, sha256, keys in order, and the
    frames and expressions it holds."""

    uri: str
    samples: int
    bytes: int
    sha256: str
    keys: tuple[str, ...] = ()
    frames: int = 0  # frames the model will encode (an mp4's estimated from its header), for plans and scheduling
    expressions: int = 0  # expressions over all samples
    expression_frames: int = 0  # sum over samples of expressions x frames: the masks the model decodes


class _HashingFile:
    """A write-only wrapper that hashes and counts what passes through it."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def encode_sample(sample: ShardSample) -> dict:
    """A webdataset sample dict: ``__key__``, the sorted-key JSON metadata, and the raw members."""
    if sample.meta.get("key") != sample.key:
        raise ValueError(f"sample key {sample.key!r} differs from its metadata key {sample.meta.get('key')!r}")
    out = {"__key__": sample.key, "json": json.dumps(sample.meta, sort_keys=True, ensure_ascii=False).encode()}
    for ext, data in sample.members.items():
        if ext == "json" or not isinstance(data, bytes):
            raise ValueError(f"sample {sample.key!r}: member {ext!r} must be raw bytes and not 'json'")
        out[ext] = data
    return out


def _cost(encoded: dict) -> int:
    return sum(TAR_BLOCK + -(-len(v) // TAR_BLOCK) * TAR_BLOCK for k, v in encoded.items() if k != "__key__")


def write_shards(
    samples: Iterable[ShardSample],
    out: str,
    *,
    prefix: str = "shard",
    max_samples: int = 1000,
    max_bytes: int = 512 * 2**20,
    extra: dict | None = None,
) -> list[ShardInfo]:
    """Write samples to ``out`` (a folder URL) as shards, then ``out/manifest.json``.

    Args:
        samples: validated sample by sample, in a deterministic order.
        out: destination folder, local path or fsspec URL.
        prefix: shard file name prefix (no dots).
        max_samples: samples per shard at most.
        max_bytes: bytes per shard at most (a single larger sample gets a shard of its own).
        extra: fields stored in the manifest (dataset, split, converter arguments).

    Returns:
        The shards written, in order.

    Raises:
        ValueError: a sample breaks the contract, or a key repeats.
    """
    if "." in prefix or "/" in prefix:
        raise ValueError(f"shard prefix must not contain dots or slashes, got {prefix!r}")
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    shards: list[ShardInfo] = []
    seen: set[str] = set()
    current: list[dict] = []
    size = 0

    def flush() -> None:
        nonlocal current, size
        if current:
            shards.append(_write_one(fs, root, f"{prefix}-{len(shards):05d}.tar", current))
            logger.info("wrote %s (%d samples, %d bytes)", shards[-1].uri, shards[-1].samples, shards[-1].bytes)
        current, size = [], 0

    for sample in samples:
        validate(sample.meta)
        if sample.key in seen:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        seen.add(sample.key)
        encoded = encode_sample(sample)
        cost = _cost(encoded)
        if current and (len(current) >= max_samples or size + cost > max_bytes):
            flush()
        current.append(encoded)
        size += cost
    flush()
    _remove_stale(fs, root, prefix, len(shards))
    manifest = {
        "format": "evtp-ivs-shards",
        "schema_version": SCHEMA_VERSION,
        "samples": sum(s.samples for s in shards),
        "shards": [asdict(s) for s in shards],
        **(extra or {}),
    }
    _atomic_write(fs, f"{root}/{MANIFEST}", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return shards


def _write_one(fs, root: str, name: str, encoded: list[dict]) -> ShardInfo:
    final, temporary = f"{root}/{name}", f"{root}/.{name}.tmp"
    with fs.open(temporary, "wb") as f:
        hashing = _HashingFile(f)
        with wds.TarWriter(hashing, user=TAR_USER, group=TAR_USER, mode=0o444, mtime=TAR_MTIME, encoder=False) as tar:
            for sample in encoded:
                tar.write(sample)
    fs.mv(temporary, final)
    keys = tuple(sample["__key__"] for sample in encoded)
    metas = [json.loads(sample["json"]) for sample in encoded]
    frames = [frame_count(meta, sample) for meta, sample in zip(metas, encoded, strict=True)]
    return ShardInfo(
        uri=name,
        samples=len(encoded),
        bytes=hashing.size,
        sha256=hashing.sha.hexdigest(),
        keys=keys,
        frames=sum(frames),
        expressions=sum(len(meta["expressions"]) for meta in metas),
        expression_frames=sum(n * len(meta["expressions"]) for n, meta in zip(frames, metas, strict=True)),
    )


def frame_count(meta: dict, members: dict) -> int:
    """The frames the model encodes for one sample: 1 for an image, the listed frames, or an mp4's at its fps
    (the ground truth's per-frame masks count them when there are any, else the video's header)."""
    media = meta["media"]
    if media["type"] == "image":
        return 1
    if media["type"] == "frames":
        return len(media["members"])
    if meta["gt"] is not None and meta["gt"]["objects"]:
        return len(next(iter(meta["gt"]["objects"].values())))
    from .video import estimated_frames  # PyAV only for mp4 samples

    try:
        return estimated_frames(members[media["member"]], media["fps"])
    except ValueError:  # not a readable video: the reader will say so; it plans as nothing
        return 0


def _atomic_write(fs, path: str, data: bytes) -> None:
    parent, name = path.rsplit("/", 1)
    temporary = f"{parent}/.{name}.tmp"
    with fs.open(temporary, "wb") as f:
        f.write(data)
    fs.mv(temporary, path)


def _remove_stale(fs, root: str, prefix: str, count: int) -> None:
    """Delete shards of an earlier, longer run of the same prefix, so globs see only this run."""
    for path in fs.glob(f"{root}/{prefix}-[0-9][0-9][0-9][0-9][0-9].tar"):
        index = int(path.rsplit("-", 1)[1].split(".")[0])
        if index >= count:
            logger.info("removing stale shard %s", path)
            fs.rm(path)
