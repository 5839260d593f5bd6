"""What an expression of the synthetic world means, read without the generator's bookkeeping.

Objects are measured from the rendered pixels and the masks (``measure_scene``, ``measure_video``): the colour is
``vocabulary.colour_name`` of the median pixel inside the eroded visible mask (the erosion drops outlines and
anti-aliased edges), the position is the visible mask's centroid, the size the full mask's area, and motion the
displacement of the full mask's centroid from frame to frame. Motion is read from full masks because occlusion moves
a visible centroid by up to 0.035 of the short side, more than the slowest object's step (0.02): the visible masks
are checked to be the full masks minus the ones painted later, which ties the two. Shapes are taken as drawn (the
test does not classify polygons).

``referents(text, things, size)`` parses the text with one regular expression per template and returns the set of
objects the words pick out, applying the margins documented in ``expressions.py`` and ``video.py``; it raises
``Unclear`` when the words fit no object, several where one is meant, or only within a margin.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.synth.expressions import EXTREME_RATIO, PLACE_GAP, RELATION_GAP
from pipeline.synth.scene import Scene, SceneObject, place
from pipeline.synth.video import SPEED_RATIO, Video
from pipeline.synth.vocabulary import COLOURS, SHAPES, SIZE_RATIO, colour_name

# A full mask whose centroid moves less than this (pixels) stands still; the slowest step is >= 1.4 px.
STILL = 0.5
# The measured speed ratio may fall short of SPEED_RATIO by the rasterisation's centroid error.
SPEED_SLACK = 0.3  # pixels per frame


class Unclear(ValueError):
    """The words do not pick out a clear set of objects."""


@dataclass(frozen=True)
class Thing:
    """One object as a viewer sees it."""

    colour: str | None  # read from the pixels (None: no colour name fits)
    shape: str
    area: int  # full mask pixels
    centre: tuple[float, float]  # visible mask centroid (x, y)
    path: tuple[tuple[float, float], ...] = ()  # video: full mask centroid per frame


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` shrunk by ``steps`` pixels (4-connected)."""
    inner = mask.copy()
    for _ in range(steps):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1], :] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return inner


def read_colour(image: np.ndarray, visible: np.ndarray) -> str | None:
    """The colour name of the median pixel inside ``visible``, away from its edges where the object allows."""
    for steps in (4, 3, 2, 1, 0):  # outlines are at most 3 px; a tiny object keeps what it has
        inner = erode(visible, steps)
        if inner.sum() >= 4 or (steps == 0 and inner.any()):
            break
    return colour_name(tuple(float(v) for v in np.median(image[inner], axis=0)))


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def measure_scene(scene: Scene) -> list[Thing]:
    return [
        Thing(read_colour(scene.image, o.visible), o.shape, int(o.full.sum()), centroid(o.visible))
        for o in scene.objects
    ]


def video_full_masks(video: Video) -> list[list[np.ndarray]]:
    """Per frame, each track's full mask: its look placed where the track is (the video's own rasterisation)."""
    out = []
    for t in range(len(video.frames)):
        objects = []
        for track in video.tracks:
            look = track.look
            obj = SceneObject(look.colour, look.shape, *track.position(t), look.r, look.angle, look.texture_seed)
            objects.append(place(obj, *video.size).full)
        out.append(objects)
    return out


def visible_from_full(fulls: list[np.ndarray]) -> list[np.ndarray]:
    """Visible masks from full masks in paint order: each minus everything painted after it."""
    covered, out = np.zeros_like(fulls[0]), []
    for full in reversed(fulls):
        out.append(full & ~covered)
        covered |= full
    return out[::-1]


def measure_video(video: Video, fulls: list[list[np.ndarray]], frame: int = 0) -> list[Thing]:
    """Colour, size and place on ``frame`` (the static families are judged on frame 0), and each track's path."""
    return [
        Thing(
            read_colour(video.frames[frame], track.masks[frame]),
            track.look.shape,
            int(fulls[frame][k].sum()),
            centroid(track.masks[frame]),
            tuple(centroid(frame_fulls[k]) for frame_fulls in fulls),
        )
        for k, track in enumerate(video.tracks)
    ]


# ------------------------------------------------------------------------------------------------ parsing

_COLOUR = "|".join(COLOURS)
_NOUNS = "|".join([*SHAPES, "shape", "object"])
_DIRECTION = "left|right|up|down"


def _np(tag: str, plural: bool = False) -> str:
    """A noun phrase: optional colour, then a shape or a generic noun ("one" only in the singular)."""
    if plural:
        return rf"(?:(?P<{tag}c>{_COLOUR}) )?(?P<{tag}n>{_NOUNS})s"
    return rf"(?:(?P<{tag}c>{_COLOUR}) )?(?P<{tag}n>{_NOUNS}|one)"


T, TS, A = _np("t"), _np("t", plural=True), _np("a")
TEMPLATES: list[tuple[str, str]] = [
    ("size-pair", rf"the (?P<w>large|big|small|little) {T}"),
    ("size-extreme", rf"the (?P<w>largest|biggest|smallest) {T}"),
    ("place-pair", rf"the {T} (?P<w>on the left|on the right|at the top|at the bottom)"),
    ("place-extreme", rf"the (?P<w>leftmost|rightmost|topmost|highest|lowest) {T}"),
    ("relation", rf"the {T} (?:to the )?(?P<w>left of|right of|above|below) the {A}"),
    ("plural", rf"(?P<w>both|the two|the three|the four|all the|the) {TS}"),
    ("attribute", rf"the {T}"),
    (
        "same-colour",
        rf"(?:the shape with the same colour as the (?P<s>{_NOUNS})"
        rf"|which object has the same colour as the (?P<s2>{_NOUNS})\?"
        rf"|find the shape that shares its colour with the (?P<s3>{_NOUNS})\.)",
    ),
    (
        "same-shape",
        rf"(?:the object with the same shape as the (?P<c>{_COLOUR}) one"
        rf"|which shape is of the same kind as the (?P<c2>{_COLOUR}) one\?)",
    ),
    ("largest", r"which object is the biggest\?|the largest shape in the picture"),
    ("smallest", r"which object is the smallest\?|the smallest shape in the picture"),
    ("furthest-left", r"which shape is furthest to the left\?"),
    ("furthest-right", r"the object closest to the right edge of the image"),
    ("furthest-top", r"which object is nearest to the top of the picture\?"),
    ("furthest-bottom", r"the shape closest to the bottom edge"),
    ("odd-colour", r"the shape whose colour differs from all the others"),
    ("odd-shape", r"which object has a different shape from the rest\?"),
    ("all-same-colour", rf"all the shapes with the same colour as the (?P<s>{_NOUNS})"),
    ("moving-way", rf"the {T} moving (?P<d>{_DIRECTION})"),
    ("plural-moving-way", rf"the {TS} moving (?P<d>{_DIRECTION})"),
    ("stops", rf"the {T} that stops"),
    ("fastest", rf"the fastest {T}"),
    ("still", rf"the {T} that does not move"),
    ("still", rf"the still {T}"),
    ("still", rf"the {T} standing still"),
    ("moving", rf"the moving {T}"),
]
_COMPILED = [(name, re.compile(pattern)) for name, pattern in TEMPLATES]


def parse(text: str) -> tuple[str, dict[str, str | None]]:
    """The template ``text`` follows and its slots; the first template that matches the whole text wins."""
    for name, pattern in _COMPILED:
        match = pattern.fullmatch(text)
        if match:
            return name, match.groupdict()
    raise Unclear(f"no template reads {text!r}")


def _descriptor(slots: dict, tag: str) -> tuple[str | None, str | None]:
    noun = slots[f"{tag}n"]
    return slots[f"{tag}c"], noun if noun in SHAPES else None


# ------------------------------------------------------------------------------------------------ meaning


def referents(text: str, things: list[Thing], size: tuple[int, int]) -> frozenset[int]:
    """The objects ``text`` names among ``things`` in an image (or video) of ``size`` (height, width)."""
    name, slots = parse(text)
    return frozenset(_MEANINGS[name](slots, things, size))


def _fitting(things: list[Thing], d: tuple[str | None, str | None], exclude: int | None = None) -> list[int]:
    colour, shape = d
    return [
        i
        for i, o in enumerate(things)
        if i != exclude and (colour is None or o.colour == colour) and (shape is None or o.shape == shape)
    ]


def _one(members: list[int], what: str) -> list[int]:
    if len(members) != 1:
        raise Unclear(f"{what}: {len(members)} objects fit, {members}")
    return members


def _attribute(slots, things, size):
    return _one(_fitting(things, _descriptor(slots, "t")), "attribute")


def _size(slots, things, size):
    members = _fitting(things, _descriptor(slots, "t"))
    if len(members) < 2 or (slots["w"] in ("large", "big", "small", "little") and len(members) != 2):
        raise Unclear(f"size word over {len(members)} objects")
    largest = slots["w"] in ("large", "big", "largest", "biggest")
    ordered = sorted(members, key=lambda m: things[m].area, reverse=largest)
    first, second = things[ordered[0]].area, things[ordered[1]].area
    ratio = max(first, second) / min(first, second)
    if ratio < (
        SIZE_RATIO if len(members) == 2 and slots["w"] in ("large", "big", "small", "little") else EXTREME_RATIO
    ):
        raise Unclear(f"sizes too close: ratio {ratio:.2f}")
    return [ordered[0]]


_SIDES = {
    "on the left": (0, True),
    "leftmost": (0, True),
    "on the right": (0, False),
    "rightmost": (0, False),
    "at the top": (1, True),
    "topmost": (1, True),
    "highest": (1, True),
    "at the bottom": (1, False),
    "lowest": (1, False),
}


def _extreme_place(members: list[int], things: list[Thing], size, axis: int, lowest: bool) -> list[int]:
    extent = size[1] if axis == 0 else size[0]
    ordered = sorted(members, key=lambda m: things[m].centre[axis], reverse=not lowest)
    gap = abs(things[ordered[0]].centre[axis] - things[ordered[1]].centre[axis])
    if gap < PLACE_GAP * extent:
        raise Unclear(f"place gap {gap:.1f} px under {PLACE_GAP} of {extent}")
    return [ordered[0]]


def _place(slots, things, size):
    members = _fitting(things, _descriptor(slots, "t"))
    pair = slots["w"].startswith(("on ", "at "))
    if len(members) < 2 or (pair and len(members) != 2):
        raise Unclear(f"place word over {len(members)} objects")
    return _extreme_place(members, things, size, *_SIDES[slots["w"]])


def relation_holds(relation: str, dx: float, dy: float, size, strict: bool) -> bool:
    """``(dx, dy)`` from the anchor is ``relation`` of it: strictly (the margin, and more along than across), or
    loosely (half the margin, across up to 1.5 times along) as every other candidate must not be."""
    along, across, extent = {
        "left of": (-dx, abs(dy), size[1]),
        "right of": (dx, abs(dy), size[1]),
        "above": (-dy, abs(dx), size[0]),
        "below": (dy, abs(dx), size[0]),
    }[relation]
    margin = RELATION_GAP * extent
    if strict:
        return along >= margin and across <= along
    return along >= margin / 2 and across <= 1.5 * along


def _relation(slots, things, size):
    (anchor,) = _one(_fitting(things, _descriptor(slots, "a")), "anchor")
    ax, ay = things[anchor].centre
    loose = [
        m
        for m in _fitting(things, _descriptor(slots, "t"), exclude=anchor)
        if relation_holds(slots["w"], things[m].centre[0] - ax, things[m].centre[1] - ay, size, strict=False)
    ]
    (target,) = _one(loose, f"{slots['w']} (loosely)")
    dx, dy = things[target].centre[0] - ax, things[target].centre[1] - ay
    if not relation_holds(slots["w"], dx, dy, size, strict=True):
        raise Unclear(f"{slots['w']}: within the margin")
    return [target]


_COUNTS = {"both": 2, "the two": 2, "the three": 3, "the four": 4}


def _plural(slots, things, size):
    members = _fitting(things, _descriptor(slots, "t"))
    if len(members) < 2 or _COUNTS.get(slots["w"], len(members)) != len(members):
        raise Unclear(f"{slots['w']!r} over {len(members)} objects")
    return members


def _unique_by(things: list[Thing], colour: str | None, shape: str | None) -> int:
    return _one(_fitting(things, (colour, shape)), "anchor")[0]


def _same_colour(slots, things, size):
    anchor = _unique_by(things, None, slots["s"] or slots["s2"] or slots["s3"])
    return _one([m for m in range(len(things)) if m != anchor and things[m].colour == things[anchor].colour], "same")


def _same_shape(slots, things, size):
    anchor = _unique_by(things, slots["c"] or slots["c2"], None)
    return _one([m for m in range(len(things)) if m != anchor and things[m].shape == things[anchor].shape], "same")


def _all_same_colour(slots, things, size):
    anchor = _unique_by(things, None, slots["s"])
    same = [m for m in range(len(things)) if m != anchor and things[m].colour == things[anchor].colour]
    if len(same) < 2:
        raise Unclear(f"'all the shapes' over {len(same)}")
    return same


def _by_area(largest: bool) -> Callable:
    def meaning(slots, things, size):
        ordered = sorted(range(len(things)), key=lambda m: things[m].area, reverse=largest)
        big, small = sorted((things[ordered[0]].area, things[ordered[1]].area), reverse=True)
        if big < EXTREME_RATIO * small:
            raise Unclear(f"sizes too close: {big} and {small}")
        return [ordered[0]]

    return meaning


def _furthest(axis: int, lowest: bool) -> Callable:
    return lambda slots, things, size: _extreme_place(list(range(len(things))), things, size, axis, lowest)


def _odd(attribute: str) -> Callable:
    def meaning(slots, things, size):
        if len(things) < 3:
            raise Unclear("odd one out of fewer than three")
        values = [getattr(o, attribute) for o in things]
        odd = []
        for i, value in enumerate(values):
            others = set(values[:i] + values[i + 1 :])
            if len(others) == 1 and value not in others:  # the others all alike, this one not
                odd.append(i)
        return _one(odd, f"odd {attribute}")

    return meaning


# Motion, from the full masks' centroids.


def _steps(thing: Thing) -> np.ndarray:
    return np.hypot(*np.diff(np.array(thing.path), axis=0).T)


def _moves(thing: Thing) -> bool:
    return bool(_steps(thing).max() > STILL)


def _heading(thing: Thing) -> str | None:
    """The named direction of a moving object's whole displacement (the nearest axis)."""
    if not _moves(thing):
        return None
    dx, dy = np.subtract(thing.path[-1], thing.path[0])
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _moving_way(plural: bool) -> Callable:
    def meaning(slots, things, size):
        way = [m for m in _fitting(things, _descriptor(slots, "t")) if _heading(things[m]) == slots["d"]]
        if plural:
            if len(way) < 2:
                raise Unclear(f"plural over {len(way)} moving {slots['d']}")
            return way
        return _one(way, f"moving {slots['d']}")

    return meaning


def _stops(slots, things, size):
    def stops(o: Thing) -> bool:
        steps = _steps(o)
        return bool(steps[0] > STILL and steps[-1] <= STILL)

    return _one([m for m in _fitting(things, _descriptor(slots, "t")) if stops(things[m])], "stops")


def _fastest(slots, things, size):
    members = _fitting(things, _descriptor(slots, "t"))
    speed = {m: float(_steps(things[m]).max()) for m in members}
    fastest = [
        m
        for m in members
        if speed[m] > STILL and all(speed[m] + SPEED_SLACK >= SPEED_RATIO * speed[o] for o in members if o != m)
    ]
    return _one(fastest, "fastest")


def _still(slots, things, size):
    return _one([m for m in _fitting(things, _descriptor(slots, "t")) if not _moves(things[m])], "still")


def _moving(slots, things, size):
    return _one([m for m in _fitting(things, _descriptor(slots, "t")) if _moves(things[m])], "moving")


_MEANINGS: dict[str, Callable] = {
    "size-pair": _size,
    "size-extreme": _size,
    "place-pair": _place,
    "place-extreme": _place,
    "relation": _relation,
    "plural": _plural,
    "attribute": _attribute,
    "same-colour": _same_colour,
    "same-shape": _same_shape,
    "largest": _by_area(True),
    "smallest": _by_area(False),
    "furthest-left": _furthest(0, True),
    "furthest-right": _furthest(0, False),
    "furthest-top": _furthest(1, True),
    "furthest-bottom": _furthest(1, False),
    "odd-colour": _odd("colour"),
    "odd-shape": _odd("shape"),
    "all-same-colour": _all_same_colour,
    "moving-way": _moving_way(False),
    "plural-moving-way": _moving_way(True),
    "stops": _stops,
    "fastest": _fastest,
    "still": _still,
    "moving": _moving,
}
