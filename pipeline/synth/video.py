"""Videos of moving shapes, and MeViS-style expressions that only motion resolves.

Each object keeps its colour, shape and size; it stands still, moves at a constant velocity, or moves and then
stops. Most videos hold a group of look-alikes (same colour, shape and size) that differ only in how they move,
so "the circle moving left" cannot be read off one frame. Motion families:

- ``direction``: "the circle moving left", "the one moving up" (the only member of the description heading that
  way, within ``DIRECTION_SPREAD``; no other member moves that way);
- ``stops``: "the square that stops" (it moves, then stands still; no other member does);
- ``fastest``: "the fastest star" (at least ``SPEED_RATIO`` times faster than every other member);
- ``still``: "the triangle that does not move" (every other member moves);
- ``moving``: "the moving circle" (every other member stands still);
- ``plural-motion``: "the shapes moving right" (two or more members, all of those heading right).

Static families from ``expressions`` (attribute, size, plural, same-colour, same-shape) hold in every frame, so
they are asked of videos too; place and relation words are not (objects move).
"""

from dataclasses import dataclass, field

import numpy as np

from .expressions import FAMILIES, SynthExpression, descriptors, matching, phrase
from .scene import (
    MIN_VISIBLE,
    SceneObject,
    Style,
    paint_background,
    place,
    render,
    sample_attributes,
    sample_size,
    sample_style,
    visible_masks,
)
from .vocabulary import sample_colour, shape_angle

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DIRECTION_SPREAD = np.deg2rad(15)  # heading jitter around the named direction
SPEED_RANGE = (0.02, 0.07)  # per frame, as a fraction of the short side (kept small enough to stay in view)
SPEED_RATIO = 2.0
VIDEO_STATIC_FAMILIES = ("attribute", "size", "plural", "same-colour", "same-shape")
MOTION_FAMILIES = ("direction", "stops", "fastest", "still", "moving", "plural-motion")


@dataclass
class Track:
    """One object through the video: its look, its start and its motion."""

    look: SceneObject  # colour, shape, size, angle, texture (position of frame 0)
    velocity: tuple[float, float]  # pixels per frame
    stop: int | None  # the frame from which it stands still (None: never stops)
    direction: str | None  # named heading, None if it never moves
    masks: list[np.ndarray] = field(default_factory=list, repr=False)  # visible mask per frame

    def position(self, t: int) -> tuple[float, float]:
        steps = t if self.stop is None else min(t, self.stop)
        return self.look.cx + self.velocity[0] * steps, self.look.cy + self.velocity[1] * steps

    @property
    def speed(self) -> float:
        return float(np.hypot(*self.velocity))

    @property
    def moves(self) -> bool:
        return self.speed > 0 and self.stop != 0


@dataclass
class Video:
    """Rendered frames and the tracks, in paint order."""

    frames: list[np.ndarray]
    tracks: list[Track]
    style: Style

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]


def _motion(
    rng: np.random.Generator, short: int, frames: int, kind: str
) -> tuple[tuple[float, float], int | None, str]:
    direction = str(rng.choice(list(DIRECTIONS)))
    heading = np.arctan2(DIRECTIONS[direction][1], DIRECTIONS[direction][0]) + rng.uniform(-1, 1) * DIRECTION_SPREAD
    speed = rng.uniform(*SPEED_RANGE) * short * (8 / max(frames, 4)) ** 0.5
    stop = int(rng.integers(1, frames - 1)) if kind == "stops" and frames >= 3 else None
    return (float(np.cos(heading) * speed), float(np.sin(heading) * speed)), stop, direction


def _motions(rng: np.random.Generator, count: int, short: int, frames: int) -> list[tuple]:
    kinds = rng.choice(["still", "moving", "moving", "stops"], size=count)
    out = []
    for kind in kinds:
        if kind == "still":
            out.append(((0.0, 0.0), None, None))
        else:
            out.append(_motion(rng, short, frames, str(kind)))
    if count >= 2 and rng.random() < 0.5:  # one clearly fastest
        fast = int(rng.integers(count))
        v, stop, d = out[fast]
        if d is not None:
            top = max(np.hypot(*m[0]) for i, m in enumerate(out) if i != fast)
            scale = max(SPEED_RATIO * 1.2 * top / max(np.hypot(*v), 1e-6), 1.0)
            out[fast] = ((v[0] * scale, v[1] * scale), stop, d)
    return out


def make_video(
    rng: np.random.Generator, frames: int = 8, *, size: tuple[int, int] | None = None, count: int | None = None
) -> Video:
    """A video of 2 to 5 objects (or ``count``), usually with a group of look-alikes that move differently."""
    size = size or sample_size(rng, 96, 480)
    height, width = size
    short = min(height, width)
    count = count or int(rng.integers(2, 6))
    for _ in range(40):
        attributes = sample_attributes(rng, count)
        if count >= 2 and rng.random() < 0.75:  # look-alikes: the first 2-3 objects share colour and shape
            twins = int(rng.integers(2, min(3, count) + 1))
            attributes[1:twins] = [attributes[0]] * (twins - 1)
        radius = None
        tracks = []
        for i, (colour_name, shape) in enumerate(attributes):
            same_look = i > 0 and attributes[i] == attributes[0] and radius is not None
            r = (
                radius * rng.uniform(0.97, 1.03)
                if same_look
                else float(short * np.exp(rng.uniform(np.log(0.04), np.log(0.12))))
            )
            radius = radius or r
            colour = tracks[0].look.colour if same_look else sample_colour(rng, colour_name)
            angle = tracks[0].look.angle if same_look else shape_angle(rng, shape)
            look = SceneObject(colour, shape, 0.0, 0.0, r, angle, int(rng.integers(2**31)))
            tracks.append(Track(look, (0.0, 0.0), None, None))
        for track, (velocity, stop, direction) in zip(tracks, _motions(rng, count, short, frames), strict=True):
            track.velocity, track.stop, track.direction = velocity, stop, direction
        if _start_positions(rng, tracks, size, frames):
            break
    else:  # too crowded for this frame size: fewer objects
        return make_video(rng, frames, size=size, count=max(count - 1, 1))
    style = sample_style(rng, [t.look for t in tracks])
    backdrop = paint_background(rng, style, height, width)
    images = []
    for t in range(frames):
        objects = _frame_objects(tracks, t, size)
        images.append(render(rng, objects, size, style, backdrop))
        for track, obj in zip(tracks, objects, strict=True):
            track.masks.append(obj.visible)
    return Video(images, tracks, style)


def _frame_objects(tracks: list[Track], t: int, size: tuple[int, int]) -> list[SceneObject]:
    objects = []
    for track in tracks:
        cx, cy = track.position(t)
        look = track.look
        objects.append(
            place(SceneObject(look.colour, look.shape, cx, cy, look.r, look.angle, look.texture_seed), *size)
        )
    visible_masks(objects)
    return objects


def _start_positions(rng: np.random.Generator, tracks: list[Track], size: tuple[int, int], frames: int) -> bool:
    """Starting points keeping every object in view and visible over ``MIN_VISIBLE`` of its area in every frame."""
    height, width = size
    for _ in range(60):
        for track in tracks:
            reach = 1.45 * track.look.r
            end = track.position(frames - 1)
            dx, dy = end[0] - track.look.cx, end[1] - track.look.cy
            lo_x, hi_x = reach - min(dx, 0), width - reach - max(dx, 0)
            lo_y, hi_y = reach - min(dy, 0), height - reach - max(dy, 0)
            if lo_x >= hi_x or lo_y >= hi_y:
                return False
            track.look.cx, track.look.cy = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
        ok = True
        for t in range(frames):
            objects = _frame_objects(tracks, t, size)
            if any(o.visible.sum() < MIN_VISIBLE * max(o.full.sum(), 1) or o.full.sum() < 9 for o in objects):
                ok = False
                break
        if ok:
            return True
    return False


# ------------------------------------------------------------------------------------------- expressions


def _heading(track: Track) -> str | None:
    return track.direction if track.moves else None


def motion_expressions(video: Video, t: int, rng: np.random.Generator) -> list[SynthExpression]:
    """Motion expressions about track ``t`` (all kind ``referring``, MeViS-style)."""
    tracks = video.tracks
    looks = [track.look for track in tracks]
    out = []
    for d in descriptors(looks[t]):
        members = matching(looks, d)
        if len(members) < 2:
            continue
        others = [tracks[m] for m in members if m != t]
        me = tracks[t]
        noun = phrase(d, rng) if d != (None, None) else str(rng.choice(["shape", "object", "one"]))
        if _heading(me) is not None and all(_heading(o) != _heading(me) for o in others):
            out.append(SynthExpression(f"the {noun} moving {me.direction}", (t,), "direction"))
        if me.stop is not None and me.stop > 0 and all(o.stop is None for o in others):
            out.append(SynthExpression(f"the {noun} that stops", (t,), "stops"))
        if me.moves and all(me.speed >= SPEED_RATIO * o.speed for o in others):
            out.append(SynthExpression(f"the fastest {noun}", (t,), "fastest"))
        if not me.moves and all(o.moves and o.stop is None for o in others):
            text = str(
                rng.choice([f"the {noun} that does not move", f"the still {noun}", f"the {noun} standing still"])
            )
            out.append(SynthExpression(text, (t,), "still"))
        if me.moves and me.stop is None and all(not o.moves for o in others):
            out.append(SynthExpression(f"the moving {noun}", (t,), "moving"))
        heading = _heading(me)
        same_way = [m for m in members if _heading(tracks[m]) == heading]
        if heading is not None and len(same_way) >= 2 and same_way[0] == t and len(same_way) < len(members):
            plural = phrase(d, rng, plural=True) if d != (None, None) else "shapes"
            out.append(SynthExpression(f"the {plural} moving {heading}", tuple(same_way), "plural-motion"))
    return out


def video_candidates(video: Video, rng: np.random.Generator) -> dict[str, list[SynthExpression]]:
    """Every motion expression, and the static ones that hold in every frame (judged on frame 0's masks)."""
    out: dict[str, list[SynthExpression]] = {}
    seen: set[str] = set()
    looks = _frame_objects(video.tracks, 0, video.size)
    for t in range(len(video.tracks)):
        found = motion_expressions(video, t, rng)
        for family in VIDEO_STATIC_FAMILIES:
            found += FAMILIES[family](looks, t, rng, video.size)
        for expression in found:
            if expression.text not in seen:
                seen.add(expression.text)
                out.setdefault(expression.family, []).append(expression)
    return out
