"""The shard sample contract (``schemas/sample.schema.json``, version 1): building and validating it.

A sample is one image or one video with every expression asked of it, so a frame's visual work can
be shared by its expressions. Its members: ``json`` (the metadata), and the pixels: ``jpg``/``png``
for an image, ``00000.jpg``, ``00001.jpg``, ... for video frames, or ``mp4``.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "sample.schema.json"
EXPRESSION_KINDS = ("referring", "reasoning", "no-target")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
# The contract, compiled once: a constant like the regex above.
_VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


class SampleError(ValueError):
    """A sample that does not fit the contract."""


@dataclass(frozen=True)
class Expression:
    """One instruction on a sample; ``object_ids`` name the ``gt.objects`` whose union is its target."""

    id: str
    text: str
    kind: str
    object_ids: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "kind": self.kind, "object_ids": list(self.object_ids)}


@dataclass
class ShardSample:
    """What a converter yields and the writer stores: the metadata and the raw member bytes by extension."""

    key: str
    meta: dict
    members: dict[str, bytes]


def make_key(*parts: str) -> str:
    """A WebDataset key from original ids: no dots or slashes (webdataset cuts keys at the first dot).

    Where sanitising changed an id (e.g. ReVOS ``UVO/all/-fbscFfkh4M``), a hash of the original is
    appended, so two ids never collide; the original stays in ``source.original_id``.
    """
    raw = "-".join(parts)
    key = _KEY_UNSAFE.sub("_", raw)
    if key != raw:
        key = f"{key}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return key


def frame_member(index: int, extension: str) -> str:
    """Member extension of video frame ``index``: zero-padded so lexical order is frame order."""
    return f"{index:05d}.{extension}"


def build_meta(
    *,
    key: str,
    media: dict,
    size: tuple[int, int],
    expressions: list[Expression],
    gt: dict | None,
    source: dict,
) -> dict:
    """The ``json`` member of a sample, validated against the schema."""
    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "media": media,
        "size": [int(size[0]), int(size[1])],
        "expressions": [e.to_json() for e in expressions],
        "gt": gt,
        "source": source,
    }
    validate(meta)
    return meta


def validate(meta: dict) -> None:
    """Raise ``SampleError`` naming the first place where ``meta`` breaks the contract.

    Beyond the JSON Schema: every RLE has the sample's size and every object has one entry per frame,
    and every expression's object ids exist.
    """
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(meta))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        raise SampleError(f"metadata breaks the sample schema at {where}: {error.message}")
    size = meta["size"]
    gt = meta["gt"]
    if gt is None:
        return
    frames = len(meta["media"]["members"]) if meta["media"]["type"] == "frames" else None
    per_frame = dict(gt["objects"])
    if gt.get("ignore") is not None:
        per_frame["(ignore)"] = gt["ignore"]
    for name, rles in per_frame.items():
        if frames is not None and len(rles) != frames:
            raise SampleError(f"object {name!r} has {len(rles)} masks for {frames} frames")
        for t, rle in enumerate(rles):
            if rle is not None and rle["size"] != size:
                raise SampleError(f"object {name!r} frame {t}: RLE size {rle['size']} disagrees with size {size}")
    for expression in meta["expressions"]:
        missing = [o for o in expression["object_ids"] if o not in gt["objects"]]
        if missing:
            raise SampleError(f"expression {expression['id']!r} refers to unknown objects {missing}")


def expressions_of(meta: dict) -> list[Expression]:
    """The expressions of a validated metadata member."""
    return [Expression(e["id"], e["text"], e["kind"], tuple(e["object_ids"])) for e in meta["expressions"]]
