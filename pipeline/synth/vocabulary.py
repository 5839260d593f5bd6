"""The words of the synthetic world and what each one means in pixels.

Colours (a name covers a range of hues, saturations and values, so that scenes drawn by other hands, e.g. PIL's
``"green"`` = (0, 128, 0) and ``"lime"`` = (0, 255, 0), fall inside a name):

    red, orange, yellow, green, blue, purple, white, black

Shapes: circle, square, triangle, star, diamond (a rhombus standing on a corner). Every shape is a polygon in
float pixel coordinates around a centre, sized by its radius ``r`` (the circle's radius; the others are scaled
so that their areas are close to the circle's).

Sizes are relative within a scene ("the small red circle" when two red circles differ in area by at least
``SIZE_RATIO``); places are absolute ("on the left", "leftmost", "at the top") or relations to an anchor ("left
of the blue square"), each with a margin so that no reading is borderline (``expressions.py``).
"""

import colorsys
from dataclasses import dataclass

import numpy as np

# name -> (hue range in degrees, saturation range, value range); a hue range may wrap through 0 (red).
COLOURS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-10.0, 8.0), (0.7, 1.0), (0.55, 1.0)),
    "orange": ((20.0, 40.0), (0.75, 1.0), (0.85, 1.0)),
    "yellow": ((50.0, 64.0), (0.7, 1.0), (0.85, 1.0)),
    "green": ((95.0, 145.0), (0.6, 1.0), (0.4, 1.0)),
    "blue": ((205.0, 245.0), (0.65, 1.0), (0.5, 1.0)),
    "purple": ((265.0, 300.0), (0.6, 1.0), (0.4, 1.0)),
    "white": ((0.0, 360.0), (0.0, 0.06), (0.93, 1.0)),
    "black": ((0.0, 360.0), (0.0, 0.3), (0.0, 0.14)),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
# Two objects of one description are "small" and "large" when their areas differ by at least this factor.
SIZE_RATIO = 2.0
# Words for an object whose colour and shape are left out.
NOUNS = ("shape", "object")


@dataclass(frozen=True)
class Colour:
    """A drawn colour: its name and RGB (0-255)."""

    name: str
    rgb: tuple[int, int, int]


def sample_colour(rng: np.random.Generator, name: str) -> Colour:
    """An RGB inside the range of colour ``name``."""
    (h0, h1), (s0, s1), (v0, v1) = COLOURS[name]
    hue = (rng.uniform(h0, h1) % 360.0) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(s0, s1), rng.uniform(v0, v1))
    return Colour(name, (round(r * 255), round(g * 255), round(b * 255)))


def colour_name(rgb: tuple[float, float, float]) -> str | None:
    """The name whose range holds ``rgb`` (0-255), or None: how a test reads a colour back from pixels.

    Achromatic names win first (white, black), then hues; ranges are widened by a small tolerance for JPEG and
    anti-aliasing.
    """
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    if s <= 0.15 and v >= 0.85:
        return "white"
    if v <= 0.2 and (s <= 0.5 or v <= 0.1):
        return "black"
    hue = h * 360.0
    for name, ((h0, h1), (s0, _), (v0, _)) in COLOURS.items():
        if name in ("white", "black"):
            continue
        in_hue = (h0 - 6 <= hue <= h1 + 6) or (h0 < 0 and hue >= 360 + h0 - 6)
        if in_hue and s >= s0 - 0.15 and v >= v0 - 0.12:
            return name
    return None


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """``(n, 2)`` float vertices (x, y) of ``shape`` centred at ``(cx, cy)`` with radius ``r``, rotated by ``angle``
    radians (clockwise on screen)."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == "square":
        half = 0.886 * r  # the square of the circle's area
        pts = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    elif shape == "triangle":
        side = 2.694 * r  # the equilateral triangle of the circle's area
        height = side * np.sqrt(3) / 2
        pts = np.array([[0.0, -2 * height / 3], [side / 2, height / 3], [-side / 2, height / 3]])
    elif shape == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.45 * r, 0.6 * r)
        pts = np.stack([np.cos(t) * radii, np.sin(t) * radii], 1)
    elif shape == "diamond":
        pts = np.array([[0.0, -1.3 * r], [0.95 * r, 0.0], [0.0, 1.3 * r], [-0.95 * r, 0.0]])
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    c, s = np.cos(angle), np.sin(angle)
    rotated = pts @ np.array([[c, s], [-s, c]])
    return rotated + np.array([cx, cy])


def shape_angle(rng: np.random.Generator, shape: str) -> float:
    """A rotation that keeps each shape recognisable: squares and diamonds stay near upright (else one is the
    other), triangles and stars turn freely."""
    if shape in ("square", "diamond"):
        return float(rng.uniform(-0.2, 0.2))
    if shape in ("triangle", "star"):
        return float(rng.uniform(-np.pi, np.pi)) if rng.random() < 0.5 else float(rng.uniform(-0.25, 0.25))
    return 0.0
