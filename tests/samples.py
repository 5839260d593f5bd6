"""Small samples in the shard contract, raw tars that bypass the writer's checks, and pickles that run code."""

import io
import json
import os
import subprocess
import tarfile

import numpy as np
from PIL import Image

from pipeline.data import Expression, ShardSample, build_meta, make_key, rle
from pipeline.data.sample import frame_member


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def image_sample(i: int, size=(24, 32), member="jpg") -> ShardSample:
    rng = np.random.default_rng(i)
    mask = rng.random(size) > 0.5
    key = make_key("synthetic", "val", f"image{i}.jpg")
    meta = build_meta(
        key=key,
        media={"type": "image", "member": member},
        size=size,
        expressions=[
            Expression(f"{i}-0", f"thing {i}", "referring", ("obj",)),
            Expression(f"{i}-1", "none", "no-target"),
        ],
        gt={"objects": {"obj": [rle.encode(mask)]}, "ignore": None},
        source={"dataset": "synthetic", "split": "val", "original_id": f"image{i}.jpg"},
    )
    return ShardSample(key, meta, {member: jpeg((rng.random((*size, 3)) * 255).astype(np.uint8))})


def video_sample(frames=3, size=(16, 20)) -> ShardSample:
    key = make_key("synthetic", "val", "UVO/all/-video.1")
    masks = [np.eye(*size, k=t, dtype=bool) for t in range(frames)]
    meta = build_meta(
        key=key,
        media={
            "type": "frames",
            "members": [frame_member(t, "jpg") for t in range(frames)],
            "frame_names": [f"{5 * t:05d}" for t in range(frames)],
        },
        size=size,
        expressions=[Expression("0", "the diagonal", "reasoning", ("7",))],
        gt={"objects": {"7": [rle.encode(m) if t != 1 else None for t, m in enumerate(masks)]}},
        source={"dataset": "synthetic", "split": "val", "original_id": "UVO/all/-video.1"},
    )
    members = {frame_member(t, "jpg"): jpeg(np.full((*size, 3), 40 * t, np.uint8)) for t in range(frames)}
    return ShardSample(key, meta, members)


def raw_tar(path, samples: list[dict]) -> None:
    """Write raw members (name -> bytes) with tarfile to a path or file object, bypassing the writer's checks."""
    with tarfile.open(fileobj=path, mode="w") if hasattr(path, "write") else tarfile.open(path, "w") as tar:
        for members in samples:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def members_of(sample: ShardSample, **overrides) -> dict:
    out = {f"{sample.key}.json": json.dumps(sample.meta).encode()}
    out |= {f"{sample.key}.{ext}": data for ext, data in sample.members.items()}
    return out | {f"{sample.key}.{k}": v for k, v in overrides.items()}


def bomb_png() -> bytes:
    """A small PNG whose header declares 9000 x 9000 pixels: over our bound, under PIL's own warning."""
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")
    return buffer.getvalue()


class Reduce:
    """Pickles as ``function(*args)``: what a malicious refs file would hold."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payload(name: str, marker) -> Reduce:
    """A live code-running payload: unpickling it writes ``marker`` (via os.system, eval, exec or check_call)."""
    write = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "system": Reduce(os.system, f"touch {marker}"),
        "eval": Reduce(eval, write),
        "exec": Reduce(exec, write),
        "check_call": Reduce(subprocess.check_call, ["touch", str(marker)]),
    }[name]
