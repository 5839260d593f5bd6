"""COCO run-length encoding, the mask format of shards and outputs (pycocotools; metrics.md §5).

A mask is stored as ``{"size": [h, w], "counts": str}``: compressed RLE over the column-major
flattening, counts decoded from bytes to ASCII so it fits in JSON.
"""

import numpy as np
from pycocotools import mask as mask_utils

Rle = dict


def encode(mask: np.ndarray) -> Rle:
    """``(h, w)`` bool or 0/1 mask -> compressed COCO RLE with a ``str`` counts field."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (height, width), got shape {mask.shape}")
    # pycocotools takes Fortran-ordered uint8 only; 0/255 would encode the same, other values not.
    rle = mask_utils.encode(np.asfortranarray(mask.astype(bool).astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode(rle: Rle, size: tuple[int, int] | None = None) -> np.ndarray:
    """Compressed (or uncompressed) COCO RLE -> ``(h, w)`` bool mask, checked against ``size`` if given."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"not a COCO RLE dict: {str(rle)[:80]}")
    h, w = (int(v) for v in rle["size"])
    if size is not None and (h, w) != tuple(size):
        raise ValueError(f"RLE size {[h, w]} disagrees with the image size {list(size)}")
    counts = rle["counts"]
    # pycocotools decodes counts that stop short of h*w into garbage instead of failing: check first.
    covered = (
        sum(counts)
        if isinstance(counts, list)
        else sum(runs(counts if isinstance(counts, str) else counts.decode(), "RLE"))
    )
    if covered != h * w:
        raise ValueError(f"RLE counts cover {covered} pixels, not {h}x{w}")
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def from_polygons(polygons: list[list[float]], height: int, width: int) -> Rle:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` -> one compressed RLE (their union)."""
    polygons = [p for p in polygons if len(p) >= 6]  # pycocotools needs >= 3 points
    if not polygons:
        return encode(np.zeros((height, width), dtype=bool))
    merged = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def from_coco_segmentation(segmentation, height: int, width: int) -> Rle:
    """A COCO annotation's ``segmentation`` (polygons, uncompressed or compressed RLE) -> compressed RLE."""
    if isinstance(segmentation, list):
        return from_polygons(segmentation, height, width)
    if isinstance(segmentation, dict):
        return encode(decode(segmentation, (height, width)))
    raise ValueError(f"unknown COCO segmentation of type {type(segmentation).__name__}")


def union(rles: list[Rle | None], size: tuple[int, int]) -> np.ndarray:
    """The pixel-wise OR of some RLEs (None = absent), as a bool mask of ``size``."""
    out = np.zeros(size, dtype=bool)
    for rle in rles:
        if rle is not None:
            out |= decode(rle, size)
    return out


def runs(counts: str, where: str) -> list[int]:
    """Run lengths of a compressed RLE string (cocoapi common/maskApi.c ``rleFrString``; metrics.md §5)."""
    runs: list[int] = []
    position, end = 0, len(counts)
    while position < end:
        value, shift, more = 0, 0, True
        while more:
            if position == end:
                raise ValueError(f"{where}: RLE counts string ends inside a run")
            char = ord(counts[position]) - 48
            if not 0 <= char < 64:
                raise ValueError(f"{where}: RLE counts character {counts[position]!r} out of range")
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 5
            if not more and char & 0x10:
                value |= -1 << shift  # sign extension of the last 5-bit group
        if len(runs) > 2:  # from the fourth run on, the string holds the difference to the run two back
            value += runs[-2]
        if value < 0:
            raise ValueError(f"{where}: RLE counts decode to a negative run")
        runs.append(value)
    return runs


def normalise(value: object, size: tuple[int, int], where: str, *, check: bool = True) -> dict | None:
    """An RLE from a dataset file as the contract's: compressed ``counts`` kept unchanged, uncompressed re-encoded.

    Raises:
        ValueError: not an RLE, another size, or (``check``) runs that do not cover the frame exactly.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or "size" not in value or "counts" not in value:
        raise ValueError(f"{where}: not a COCO RLE: {str(value)[:80]}")
    try:
        height, width = (int(v) for v in value["size"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: RLE size {value['size']!r} is not [height, width]") from None
    if (height, width) != tuple(size):
        raise ValueError(f"{where}: RLE size {[height, width]} differs from the frame size {list(size)}")
    counts = value["counts"]
    if isinstance(counts, str):
        if check and sum(runs(counts, where)) != height * width:
            raise ValueError(f"{where}: RLE runs do not cover {height}x{width} pixels")
        return {"size": [height, width], "counts": counts}
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise ValueError(f"{where}: uncompressed RLE counts do not cover {height}x{width} pixels")
        return encode(decode({"size": [height, width], "counts": counts}, size))
    raise ValueError(f"{where}: RLE counts of type {type(counts).__name__}, expected a string or a list")
