"""ReasonSeg (metrics.md §4.1, §4.5, §6.7) -> one sample per image, its masks rasterised exactly as LISA's.

Layout (LISA README, ``utils/dataset.py::ValDataset``, ``utils/data_processing.py::get_mask_from_json``)::

    <root>/<split>/<name>.jpg     split: train, val or test
    <root>/<split>/<name>.json    labelme style: "text" (list of instructions), "is_sentence" (bool),
                                  "shapes" [{"label", "points": [[x, y], ...]}, ...]

Samples: one per ``*.jpg`` of the split, sorted by file name, image bytes unchanged. Each ``text`` entry is an
expression, id ``str(index)``, kind "reasoning", object ids ``["target"]`` (LISA and HyperSeg score only
``text[0]``; the others are GPT rephrasings). ``source.ids``: ``is_sentence`` (it picks LISA's prompt template)
and, for an EXIF-rotated JPEG, ``exif_orientation``.

Ground truth, as ``get_mask_from_json`` builds it: a shape labelled "flag" (any case) is skipped; the others are
painted largest first (area = pixels of the shape's own raster; equal areas in reverse file order, so the earlier
shape wins, as numpy 1.24's insertion sort orders up to 16 shapes) with 255 when "ignore" is in the label and 1
otherwise, so a smaller shape overwrites a larger one. ``gt.objects["target"]`` = the pixels left at 1 and
``gt.ignore`` = those left at 255 (None when there are none). LISA's metric excludes the ignore pixels; HyperSeg's
casts the mask to bool, which scores target | ignore as target (metrics.md §4.5): both follow from these two masks.

Rasterisation: ``cv2.polylines(mask, pts, True, v, 1)`` then ``cv2.fillPoly(mask, pts, v)`` with the points cast to
int32 (truncation toward zero), re-implemented in numpy (cv2 is not a dependency) after OpenCV's
``modules/imgproc/src/drawing.cpp`` (``Line``/``LineIterator``, ``clipLine``, ``CollectPolyEdges``,
``FillEdgeCollection``). ``fillPoly`` draws the same 8-connected outline that ``polylines`` draws, then fills the
scanlines between edges. OpenCV changed the fill between 4.10 and 4.12, so both rules are here:

- ``"opencv-4.8"`` (default; LISA's requirements pin opencv_python 4.8.0.74): edge x at pixel centres
  (+0.5), spans from floor(left) to floor(right); bit-exact to OpenCV 4.8.0 and 4.10.0 on 3000 random polygons
  (inside, spilling over and far outside the image, 1-11 vertices, self-intersecting).
- ``"opencv-4.12"``: spans from ceil(left) to floor(right) of the exact edge x; bit-exact to OpenCV 4.12.0 and
  5.0.0 on the same polygons. Its spans lie inside 4.8's: it paints fewer boundary pixels on slanted edges.

Neither is pycocotools ``frPyObjects`` (RefCOCO's rasterisation): against OpenCV 5.0 it differed on boundary
pixels of every one of 500 random convex polygons.

A JPEG with an EXIF orientation: ``cv2.imread`` rotates it, so LISA's canvas and labelme's points are in the
rotated frame; the mask is rasterised there and turned back into the stored pixels' frame, which leaves every IoU
unchanged (a model reading the shard sees the stored, unrotated pixels).
"""

import io
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .. import rle
from ..sample import Expression, ShardSample, build_meta, make_key

logger = logging.getLogger(__name__)

FORMAT = "reasonseg"
TARGET = "target"
FILL_RULES = ("opencv-4.8", "opencv-4.12")
IGNORE_VALUE = 255  # get_mask_from_json: "ignored during evaluation"
EXIF_ORIENTATION = 0x0112
# OpenCV drawing.cpp fixed point: 16 fractional bits.
XY_SHIFT = 16
XY_ONE = 1 << XY_SHIFT


def convert(root: str | Path, *, split: str, fill_rule: str = "opencv-4.8") -> Iterator[ShardSample]:
    """Yield one sample per ``<root>/<split>/*.jpg``, sorted by file name.

    Args:
        root: the ``ReasonSeg`` folder (holding ``train/``, ``val/``, ``test/``).
        split: the split folder name.
        fill_rule: ``"opencv-4.8"`` (LISA's pinned OpenCV) or ``"opencv-4.12"`` (OpenCV 4.12 and 5.x): which
            OpenCV polygon fill to reproduce.

    Raises:
        ValueError: unknown rule, missing split folder or json, or a malformed json (naming the file).
    """
    if fill_rule not in FILL_RULES:
        raise ValueError(f"unknown fill_rule {fill_rule!r}: expected one of {list(FILL_RULES)}")
    folder = Path(root) / split
    if not folder.is_dir():
        raise ValueError(f"{folder}: missing split folder")
    images = sorted(p for p in folder.iterdir() if p.suffix == ".jpg" and p.is_file())  # LISA: glob("*.jpg")
    if not images:
        raise ValueError(f"{folder}: no .jpg images")
    logger.info("ReasonSeg %s: %d images", split, len(images))
    for path in images:
        yield _image_sample(path, split, fill_rule)


def _image_sample(path: Path, split: str, fill_rule: str) -> ShardSample:
    data = path.read_bytes()
    size, orientation = _image_header(path, data)
    json_path = path.with_suffix(".json")
    annotation = load_annotation(json_path)
    texts, is_sentence, shapes = _fields(annotation, json_path)
    oriented = size[::-1] if orientation in (5, 6, 7, 8) else size  # the frame cv2.imread and labelme see
    _check_labelme_size(annotation, oriented, json_path)
    canvas = paint_shapes(shapes, oriented, fill_rule, json_path)
    canvas = unorient(canvas, orientation)
    ignore = canvas == IGNORE_VALUE
    expressions = [Expression(str(i), text, "reasoning", (TARGET,)) for i, text in enumerate(texts)]
    ids: dict = {"is_sentence": is_sentence}
    if orientation != 1:
        ids["exif_orientation"] = orientation
    key = make_key(FORMAT, split, path.stem)
    meta = build_meta(
        key=key,
        media={"type": "image", "member": "jpg"},
        size=size,
        expressions=expressions,
        gt={"objects": {TARGET: [rle.encode(canvas == 1)]}, "ignore": [rle.encode(ignore)] if ignore.any() else None},
        source={"dataset": FORMAT, "split": split, "original_id": path.name, "ids": ids},
    )
    return ShardSample(key=key, meta=meta, members={"jpg": data})


def load_annotation(path: Path) -> dict:
    """A ReasonSeg json, read as UTF-8 or, where that fails, as cp1252 (as ``get_mask_from_json`` retries).

    Raises:
        ValueError: missing, in neither encoding, or not a JSON object.
    """
    if not path.is_file():
        raise ValueError(f"{path}: missing; every ReasonSeg image has its json beside it")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: neither UTF-8 nor cp1252 ({error})") from None
    try:
        annotation = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(annotation, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(annotation).__name__}")
    return annotation


def _fields(annotation: dict, path: Path) -> tuple[list[str], bool, list[dict]]:
    texts, is_sentence, shapes = annotation.get("text"), annotation.get("is_sentence"), annotation.get("shapes")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{path}: 'text' must be a non-empty list of strings, got {str(texts)[:80]}")
    if not isinstance(is_sentence, bool):
        raise ValueError(f"{path}: 'is_sentence' must be true or false, got {is_sentence!r}")
    if not isinstance(shapes, list):
        raise ValueError(f"{path}: 'shapes' must be a list, got {type(shapes).__name__}")
    for index, shape in enumerate(shapes):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise ValueError(f"{path}: shape #{index} has no string 'label'")
    return texts, is_sentence, shapes


def paint_shapes(shapes: list[dict], size: tuple[int, int], fill_rule: str, path: Path | str = "") -> np.ndarray:
    """``get_mask_from_json``'s ``(h, w)`` uint8 mask: 0 background, 1 target, 255 ignore.

    Raises:
        ValueError: a (non-flag) shape without a list of at least one finite ``[x, y]`` point.
    """
    kept, areas = [], []
    for index, shape in enumerate(shapes):
        label = shape["label"].lower()
        if label == "flag":  # "meaningless deprecated annotations"
            continue
        raster = fill_polygon(_points(shape.get("points"), f"{path}: shape #{index}"), *size, rule=fill_rule)
        kept.append((IGNORE_VALUE if "ignore" in label else 1, raster))
        areas.append(int(raster.sum()))
    canvas = np.zeros(size, dtype=np.uint8)
    # np.argsort(area)[::-1]: numpy 1.24 sorts up to 16 values by insertion sort, which is stable, so ties end up
    # in reverse file order; a stable sort reproduces that.
    for index in np.argsort(np.asarray(areas, dtype=np.int64), kind="stable")[::-1]:
        value, raster = kept[index]
        canvas[raster] = value
    return canvas


def _points(points: object, where: str) -> list[tuple[int, int]]:
    """labelme points -> int pairs, truncated toward zero as ``np.array(points, dtype=np.int32)`` does."""
    if not isinstance(points, list) or not points:
        raise ValueError(f"{where}: 'points' must be a non-empty list of [x, y]")
    out = []
    for point in points:
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(c) for c in point)):
            raise ValueError(f"{where}: point {str(point)[:40]} is not [x, y]")
        if not all(math.isfinite(c) for c in point):
            raise ValueError(f"{where}: point {point} is not finite")
        out.append((int(point[0]), int(point[1])))
    return out


def fill_polygon(points: list[tuple[int, int]], height: int, width: int, *, rule: str = "opencv-4.8") -> np.ndarray:
    """The ``(height, width)`` bool raster of ``cv2.polylines`` + ``cv2.fillPoly`` of one integer polygon.

    Args:
        points: the vertices as integer ``(x, y)``, in order; the polygon closes itself.
        height, width: the canvas size.
        rule: ``"opencv-4.8"`` or ``"opencv-4.12"`` (see the module docstring).

    Returns:
        The pixels ``fillPoly`` (whose outline equals ``polylines``') sets, 8-connected lines, line type 8.
    """
    if rule not in FILL_RULES:
        raise ValueError(f"unknown fill rule {rule!r}: expected one of {list(FILL_RULES)}")
    mask = np.zeros((height, width), dtype=bool)
    edges = []  # (y_top, y_bottom, x_at_top in 16.16 fixed point, dx per row)
    x0, y0 = points[-1]
    for x1, y1 in points:  # CollectPolyEdges: edge (v[i-1], v[i]), starting with (v[n-1], v[0])
        _draw_line(mask, x0, y0, x1, y1)
        edge = _edge(x0, y0, x1, y1, width, height, rule)
        if edge is not None:
            edges.append(edge)
        x0, y0 = x1, y1
    if len(edges) >= 2:
        _fill_edges(mask, edges, rule)
    return mask


def _edge(x0: int, y0: int, x1: int, y1: int, width: int, height: int, rule: str) -> tuple | None:
    """One non-horizontal edge as ``CollectPolyEdges`` stores it (None for a horizontal one)."""
    c0x, c0y, c1x, c1y = x0 << XY_SHIFT, y0, x1 << XY_SHIFT, y1
    if _outside(x0, y0, x1, y1, width, height):
        _, t0x, t0y, t1x, t1y = _clip_line(x0, y0, x1, y1, width, height)
        if t0y != t1y:
            c0y, c1y = t0y, t1y
            c0x, c1x = t0x << XY_SHIFT, t1x << XY_SHIFT
        elif rule == "opencv-4.12":  # 4.12 takes the clipped x even when the clipped line is horizontal
            c0x, c1x = t0x << XY_SHIFT, t1x << XY_SHIFT
    elif rule == "opencv-4.8":
        c0x, c1x = c0x + (XY_ONE >> 1), c1x + (XY_ONE >> 1)  # 4.8: x at the pixel centre, floored when filling
    if y0 == y1:
        return None
    dx = _c_div(c1x - c0x, c1y - c0y)
    if y0 < y1:
        return y0, y1, c0x + (y0 - c0y) * dx, dx
    return y1, y0, c1x + (y1 - c1y) * dx, dx


def _fill_edges(mask: np.ndarray, edges: list[tuple], rule: str) -> None:
    """``FillEdgeCollection``: even-odd spans between the edges crossing each row; an edge covers [y_top, y_bottom)."""
    height, width = mask.shape
    rows, xs = [], []
    for y_top, y_bottom, x, dx in edges:
        ys = np.arange(max(y_top, 0), min(y_bottom, height), dtype=np.int64)
        rows.append(ys)
        xs.append(x + (ys - y_top) * dx)  # the x of row y, advanced by dx per row from the top, as OpenCV does
    rows_all, xs_all = np.concatenate(rows), np.concatenate(xs)
    order = np.lexsort((xs_all, rows_all))
    rows_all, xs_all = rows_all[order], xs_all[order]
    assert len(rows_all) % 2 == 0 and np.array_equal(rows_all[0::2], rows_all[1::2])  # closed polygon: pairs
    round_up = XY_ONE - 1 if rule == "opencv-4.12" else 0
    left = np.maximum((xs_all[0::2] + round_up) >> XY_SHIFT, 0)
    right = np.minimum(xs_all[1::2] >> XY_SHIFT, width - 1)
    keep = left <= right
    runs = np.zeros((height, width + 1), dtype=np.int32)  # +1 at a span's start, -1 after its end
    np.add.at(runs, (rows_all[0::2][keep], left[keep]), 1)
    np.add.at(runs, (rows_all[0::2][keep], right[keep] + 1), -1)
    mask |= np.cumsum(runs, axis=1)[:, :width] > 0


def _draw_line(mask: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """``Line`` with connectivity 8: clip to the image, then Bresenham from the left end (``LineIterator``)."""
    height, width = mask.shape
    if _outside(x0, y0, x1, y1, width, height):
        inside, x0, y0, x1, y1 = _clip_line(x0, y0, x1, y1, width, height)
        if not inside:
            return
    dx, dy = x1 - x0, y1 - y0
    if dx < 0:  # left_to_right
        x0, y0, dx, dy = x1, y1, -dx, -dy
    step_y = -1 if dy < 0 else 1
    dy = abs(dy)
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)
    i = np.arange(major + 1)
    # The iterator moves one step along the minor axis whenever its error is negative; in closed form the minor
    # offset of pixel i is ceil((2 * minor * i - major) / (2 * major)).
    offset = -((major - 2 * minor * i) // (2 * major)) if major else np.zeros(1, dtype=np.int64)
    if steep:
        mask[y0 + step_y * i, x0 + offset] = True
    else:
        mask[y0 + step_y * offset, x0 + i] = True


def _clip_line(x1: int, y1: int, x2: int, y2: int, width: int, height: int) -> tuple[bool, int, int, int, int]:
    """OpenCV ``clipLine(Size2l, Point2l&, Point2l&)``: the endpoints moved onto the image; False if none is in it."""
    right, bottom = width - 1, height - 1
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += _c_div((a - y1) * (x2 - x1), y2 - y1)
            y1, c1 = a, (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += _c_div((a - y2) * (x2 - x1), y2 - y1)
            y2, c2 = a, (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += _c_div((a - x1) * (y2 - y1), x2 - x1)
                x1, c1 = a, 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += _c_div((a - x2) * (y2 - y1), x2 - x1)
                x2, c2 = a, 0
    return (c1 | c2) == 0, x1, y1, x2, y2


def _outside(x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> bool:
    return not (0 <= x0 < width and 0 <= x1 < width and 0 <= y0 < height and 0 <= y1 < height)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncation toward zero), which OpenCV's int64 arithmetic uses."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _image_header(path: Path, data: bytes) -> tuple[tuple[int, int], int]:
    """The stored ``(height, width)`` and the EXIF orientation (1 when absent), from the header only."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    if orientation not in range(1, 9):
        raise ValueError(f"{path}: EXIF orientation {orientation!r} is not 1-8")
    return (height, width), int(orientation)


def _check_labelme_size(annotation: dict, oriented: tuple[int, int], path: Path) -> None:
    """labelme's ``imageHeight``/``imageWidth``, where present, must be the image's (EXIF-applied) size."""
    height, width = annotation.get("imageHeight"), annotation.get("imageWidth")
    if height is None and width is None:
        return
    if (height, width) != oriented:
        raise ValueError(
            f"{path}: imageHeight/imageWidth {height}x{width} differ from the image's {oriented[0]}x{oriented[1]}"
            " (after EXIF orientation, as cv2.imread reads it): the polygons would not fit the pixels"
        )


def unorient(mask: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF ``orientation`` (the transform PIL's ``ImageOps.exif_transpose`` applies) on a mask."""
    if orientation in (2, 4, 3, 5, 7):  # flips, half turn and the two transposes are their own inverses
        return _orient(mask, orientation)
    if orientation in (6, 8):
        return _orient(mask, 14 - orientation)  # a quarter turn's inverse is the other quarter turn
    return mask


def _orient(mask: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels -> the displayed ones, for EXIF orientation 1-8."""
    return {
        1: lambda m: m,
        2: lambda m: m[:, ::-1],  # mirrored left-right
        3: lambda m: m[::-1, ::-1],  # turned 180
        4: lambda m: m[::-1, :],  # mirrored top-bottom
        5: lambda m: m.T,  # transposed
        6: lambda m: np.rot90(m, -1),  # turned 90 clockwise to display
        7: lambda m: m[::-1, ::-1].T,  # transverse
        8: lambda m: np.rot90(m, 1),  # turned 90 counter-clockwise to display
    }[orientation](mask).copy()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
