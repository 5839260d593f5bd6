"""Scenes of coloured shapes: placement, exact masks and rendering with varied styles.

An object's full mask is the pycocotools raster of its polygon (the rasterisation the RefCOCO layout's readers
use, so a written polygon decodes back to exactly this mask). Objects are painted in order, later ones on top;
an object's *visible* mask is its full mask minus every later object's, and the visible masks are the ground
truth. The style of each scene is drawn at random (``Style``): backgrounds (flat, gradient, noise, checks,
stripes), fills (flat, noise, gradient, stripes), outlines, anti-aliasing and hue jitter inside each colour name,
so that a model trained here also reads scenes drawn by other hands.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from .vocabulary import COLOURS, SHAPES, Colour, sample_colour, shape_angle, shape_polygon

# Image sizes: (height, width) between about 96 x 128 and 480 x 640, either orientation.
MIN_SIDE, MAX_SIDE = 96, 640
ASPECTS = (0.75, 1.0, 4 / 3, 16 / 9, 0.5625)
# Object radius as a fraction of the image's short side: diameters from 5% to 40% of it.
RADIUS_RANGE = (0.025, 0.2)
# An occluded object keeps at least this fraction of its area visible.
MIN_VISIBLE = 0.6


@dataclass
class SceneObject:
    """One shape: what it is, where, and its masks (filled in by ``place`` and ``visible_masks``)."""

    colour: Colour
    shape: str
    cx: float
    cy: float
    r: float
    angle: float
    texture_seed: int = 0
    polygon: np.ndarray = field(repr=False, default=None)
    full: np.ndarray = field(repr=False, default=None)  # (H, W) bool
    visible: np.ndarray = field(repr=False, default=None)  # (H, W) bool

    @property
    def area(self) -> int:
        return int(self.full.sum())

    @property
    def centre(self) -> tuple[float, float]:
        """The visible mask's centroid (x, y): where a viewer sees the object."""
        ys, xs = np.nonzero(self.visible)
        return float(xs.mean()), float(ys.mean())


@dataclass(frozen=True)
class Style:
    """How a scene is drawn."""

    background: str  # flat, gradient, noise, checks, stripes
    background_rgb: tuple[tuple[int, int, int], tuple[int, int, int]]
    fill: str  # flat, noise, gradient, stripes
    outline: int  # outline width in pixels, 0 for none
    outline_dark: bool  # black outline, else a darker shade of the fill
    antialias: bool
    noise: float  # std of per-pixel noise over the whole image


@dataclass
class Scene:
    """A rendered image with its objects, in paint order."""

    image: np.ndarray  # (H, W, 3) uint8
    objects: list[SceneObject]
    style: Style

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[:2]


def sample_size(rng: np.random.Generator, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """A (height, width) with a common aspect ratio, long side log-uniform in [min_side * 4/3, max_side]."""
    aspect = float(rng.choice(ASPECTS))  # width / height
    long_side = float(np.exp(rng.uniform(np.log(min_side * 4 / 3), np.log(max_side))))
    if aspect >= 1:
        width, height = long_side, long_side / aspect
    else:
        height, width = long_side, long_side * aspect
    return max(int(round(height)), 32), max(int(round(width)), 32)


Raster = Callable[[np.ndarray, int, int], np.ndarray]


def coco_raster(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pycocotools raster of one polygon: what ``frPyObjects`` + ``decode`` give for it in COCO files."""
    rle = mask_utils.frPyObjects([polygon.reshape(-1).astype(np.float64).tolist()], height, width)
    return mask_utils.decode(rle)[:, :, 0].astype(bool)


def place(obj: SceneObject, height: int, width: int, raster: Raster | None = None) -> SceneObject:
    """Fill in the polygon and the full mask (``raster`` of the polygon; pycocotools' by default)."""
    obj.polygon = shape_polygon(obj.shape, obj.cx, obj.cy, obj.r, obj.angle)
    obj.full = (raster or coco_raster)(obj.polygon, height, width)
    return obj


def visible_masks(objects: list[SceneObject]) -> None:
    """Each object's visible mask: its full mask minus the objects painted after it."""
    covered = np.zeros_like(objects[0].full)
    for obj in reversed(objects):
        obj.visible = obj.full & ~covered
        covered |= obj.full


def sample_objects(
    rng: np.random.Generator,
    size: tuple[int, int],
    attributes: list[tuple[str, str]],
    radius_range: tuple[float, float] = RADIUS_RANGE,
    tries: int = 30,
    raster: Raster | None = None,
) -> list[SceneObject]:
    """Place one object per (colour, shape), each visible over at least ``MIN_VISIBLE`` of its area.

    An object that finds no such place in ``tries`` draws is left out, so a scene may hold fewer objects than
    asked.
    """
    height, width = size
    short = min(height, width)
    lo, hi = (f * short for f in radius_range)
    objects: list[SceneObject] = []
    for colour_name, shape in attributes:
        for _ in range(tries):
            r = float(np.exp(rng.uniform(np.log(max(lo, 3.0)), np.log(max(hi, 4.0)))))
            reach = 1.3 * r
            if 2 * reach >= min(height, width):
                continue
            cx = float(rng.uniform(reach, width - reach))
            cy = float(rng.uniform(reach, height - reach))
            colour, angle, seed = sample_colour(rng, colour_name), shape_angle(rng, shape), int(rng.integers(2**31))
            obj = place(SceneObject(colour, shape, cx, cy, r, angle, seed), height, width, raster)
            if obj.full.sum() < 9:
                continue
            candidate = objects + [obj]
            visible_masks(candidate)
            if all(o.visible.sum() >= MIN_VISIBLE * o.full.sum() for o in candidate):
                objects = candidate
                break
    if objects:
        visible_masks(objects)
    return objects


def sample_attributes(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """``count`` (colour, shape) pairs drawn from a few colours and shapes, so distractors share one with a target."""
    colours = rng.choice(list(COLOURS), size=int(rng.integers(1, 6)), replace=False)
    shapes = rng.choice(SHAPES, size=int(rng.integers(1, 5)), replace=False)
    return [(str(rng.choice(colours)), str(rng.choice(shapes))) for _ in range(count)]


# ------------------------------------------------------------------------------------------------ rendering


def sample_style(rng: np.random.Generator, objects: list[SceneObject]) -> Style:
    """A drawing style whose background contrasts with every object's colour."""
    colours = np.array([o.colour.rgb for o in objects], dtype=np.float64).reshape(-1, 3)
    for _ in range(50):
        if rng.random() < 0.5:  # greys, white and black: the most common plain backgrounds
            level = float(rng.choice([255.0, 235.0, rng.uniform(40, 220), 20.0, 0.0]))
            base = np.array([level, level, level])
        else:  # a muted colour
            base = rng.uniform(40, 220, size=3)
            base = base.mean() + (base - base.mean()) * 0.35
        if len(colours) == 0 or np.min(np.linalg.norm(colours - base, axis=1)) >= 90:
            break
    second = np.clip(base + rng.uniform(-25, 25, size=3), 0, 255)
    background = str(rng.choice(["flat", "flat", "gradient", "noise", "checks", "stripes"]))
    return Style(
        background=background,
        background_rgb=(tuple(int(v) for v in base), tuple(int(v) for v in second)),
        fill=str(rng.choice(["flat", "flat", "noise", "gradient", "stripes"])),
        outline=int(rng.choice([0, 0, 0, 1, 2, 3])),
        outline_dark=bool(rng.random() < 0.6),
        antialias=bool(rng.random() < 0.5),
        noise=float(rng.choice([0.0, 0.0, 3.0, 6.0])),
    )


def paint_background(rng: np.random.Generator, style: Style, height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` float32 background of ``style``."""
    a = np.array(style.background_rgb[0], dtype=np.float32)
    b = np.array(style.background_rgb[1], dtype=np.float32)
    if style.background == "flat":
        return np.broadcast_to(a, (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if style.background == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / width + np.sin(angle) * yy / height
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        return a + (b - a) * t[..., None]
    if style.background == "noise":
        return a + rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)
    cell = max(4, int(rng.integers(6, 24) * max(height, width) / 320))
    if style.background == "checks":
        pick = ((yy // cell + xx // cell) % 2).astype(bool)
    else:
        angle = rng.uniform(0, np.pi)
        pick = ((np.cos(angle) * xx + np.sin(angle) * yy) // cell % 2).astype(bool)
    return np.where(pick[..., None], b, a)


def _fill(rng: np.random.Generator, style: Style, rgb: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """The object's paint over its bounding box: its colour with a texture that keeps the colour's name."""
    base = np.array(rgb, dtype=np.float32)
    h, w = shape
    if style.fill == "flat":
        return np.broadcast_to(base, (h, w, 3)).copy()
    if style.fill == "noise":
        return base + rng.normal(0, 8, size=(h, w, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if style.fill == "gradient":
        t = yy / max(h - 1, 1) - 0.5
        return base * (1 + 0.25 * t[..., None])
    period = max(3, int(rng.integers(3, 8)))
    stripe = ((xx + yy) // period % 2).astype(np.float32)
    # 7% darker stripes keep every name: white's lowest value 0.93 stays over colour_name's 0.85, orange's and
    # yellow's 0.85 over 0.73 (15% darker stripes read as grey or brown).
    return base * (1 - 0.07 * stripe[..., None])


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels (4-connected) of its outside."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    return mask & ~inner


def _coverage(obj: SceneObject, box: tuple[int, int, int, int], factor: int = 4) -> np.ndarray:
    """The fraction of each pixel of ``box`` the polygon covers, from a ``factor``-times finer raster."""
    y0, y1, x0, x1 = box
    local = (obj.polygon - np.array([x0, y0])) * factor
    fine = coco_raster(local, (y1 - y0) * factor, (x1 - x0) * factor).astype(np.float32)
    return fine.reshape(y1 - y0, factor, x1 - x0, factor).mean(axis=(1, 3))


def _box(mask: np.ndarray, pad: int = 2) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return max(ys.min() - pad, 0), min(ys.max() + pad + 1, h), max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)


def render(
    rng: np.random.Generator,
    objects: list[SceneObject],
    size: tuple[int, int],
    style: Style,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Paint ``objects`` in order over the background (``background``, else a new one): ``(H, W, 3)`` uint8.

    An object's texture comes from its own ``texture_seed``, so it looks the same in every frame of a video.
    """
    height, width = size
    canvas = (paint_background(rng, style, height, width) if background is None else background).copy()
    for obj in objects:
        box = _box(obj.full)
        y0, y1, x0, x1 = box
        alpha = _coverage(obj, box) if style.antialias else obj.full[y0:y1, x0:x1].astype(np.float32)
        paint = _fill(np.random.default_rng(obj.texture_seed), style, obj.colour.rgb, (y1 - y0, x1 - x0))
        outline = min(style.outline, int(obj.r // 5))  # a small shape keeps its colour
        if outline:
            edge = _edge(obj.full[y0:y1, x0:x1], outline)
            line = np.zeros(3, np.float32) if style.outline_dark else np.array(obj.colour.rgb, np.float32) * 0.55
            paint[edge] = line
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = region * (1 - alpha[..., None]) + paint * alpha[..., None]
    if style.noise:
        canvas = canvas + rng.normal(0, style.noise, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def make_scene(
    rng: np.random.Generator,
    *,
    size: tuple[int, int] | None = None,
    count: int | None = None,
    attributes: list[tuple[str, str]] | None = None,
    radius_range: tuple[float, float] = RADIUS_RANGE,
    raster: Raster | None = None,
) -> Scene:
    """A random scene of 2 to 8 objects (or ``count``, or the given ``attributes``); masks by ``raster``."""
    size = size or sample_size(rng)
    for _ in range(20):
        attrs = attributes or sample_attributes(rng, count or int(rng.integers(2, 9)))
        objects = sample_objects(rng, size, attrs, radius_range, raster=raster)
        if len(objects) >= min(2, len(attrs)):
            break
    style = sample_style(rng, objects)
    return Scene(image=render(rng, objects, size, style), objects=objects, style=style)
