"""Seeded samples of the synthetic world, per split: what each dataset layout and the training stream hold.

Every sample is drawn from its own generator, seeded by (split, stream, index) through ``numpy.random.SeedSequence``,
so the splits come from disjoint seeds and any sample can be rebuilt alone. Streams:

- ``refcoco``: an image with up to ``max_expressions`` single-object referring expressions (attribute, size,
  place, relation), as RefCOCO refs;
- ``reasonseg``: an image with one reasoning sentence whose targets nothing occludes (a labelme polygon is the
  whole shape), its mask rasterised as the ReasonSeg readers do;
- ``revos``: a video with up to ``max_expressions`` expressions, motion ones first;
- ``train``: images and clips for training, every family mixed.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .expressions import REASONING_FAMILIES, SynthExpression, candidates, choose
from .scene import RADIUS_RANGE, Scene, make_scene
from .video import MOTION_FAMILIES, Video, make_video, video_candidates

SPLITS = ("train", "val", "test")
STREAMS = ("refcoco", "reasonseg", "revos", "train-image", "train-video")
SINGLE_REFERRING = ("attribute", "size", "place", "relation")
# Family weights for drawing expressions: the rarer, harder families are drawn as often as the easy ones.
IMAGE_WEIGHTS = {"attribute": 1.0, "size": 1.0, "place": 1.0, "relation": 1.5, "plural": 0.6}
# Reasoning sentences are rare in videos (few scenes allow one): taken whenever there is one, so that ReVOS's two
# categories (referring, reasoning) both have expressions.
VIDEO_WEIGHTS = {
    **dict.fromkeys(MOTION_FAMILIES, 1.5),
    "plural-motion": 0.8,
    "plural": 0.4,
    "attribute": 0.6,
    "same-colour": 20.0,
    "same-shape": 20.0,
}


def generator(split: str, stream: str, index: int) -> np.random.Generator:
    """The generator of one sample: split, stream and index each change every draw."""
    if split not in SPLITS or stream not in STREAMS:
        raise ValueError(f"unknown split {split!r} or stream {stream!r}; expected {SPLITS} and {STREAMS}")
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    return np.random.default_rng(np.random.SeedSequence([SPLITS.index(split), STREAMS.index(stream), index]))


@dataclass
class ImageSample:
    scene: Scene
    expressions: list[SynthExpression]


@dataclass
class VideoSample:
    video: Video
    expressions: list[SynthExpression]


def refcoco_image(rng: np.random.Generator, max_expressions: int = 4, **scene_options) -> ImageSample:
    """An image and its single-object referring expressions (redrawn until it has at least one)."""
    while True:
        scene = make_scene(rng, **scene_options)
        pool = candidates(scene.objects, scene.size, rng, SINGLE_REFERRING)
        chosen = choose(pool, max_expressions, rng, IMAGE_WEIGHTS)
        if chosen:
            return ImageSample(scene, chosen)


def unoccluded(scene: Scene, expression: SynthExpression) -> bool:
    return all(np.array_equal(scene.objects[t].visible, scene.objects[t].full) for t in expression.targets)


def reasonseg_image(rng: np.random.Generator, raster: Callable | None = None, **scene_options) -> ImageSample:
    """An image and one reasoning sentence about objects nothing covers (``raster``: the layout's rasteriser)."""
    while True:
        scene = make_scene(rng, raster=raster, **scene_options)
        pool = candidates(scene.objects, scene.size, rng, REASONING_FAMILIES)
        pool = {f: [e for e in v if unoccluded(scene, e)] for f, v in pool.items()}
        chosen = choose(pool, 1, rng)
        if chosen:
            return ImageSample(scene, chosen)


def revos_video(rng: np.random.Generator, frames: int = 8, max_expressions: int = 4, **options) -> VideoSample:
    """A video and its expressions, motion families weighted up."""
    while True:
        video = make_video(rng, frames, **options)
        chosen = choose(video_candidates(video, rng), max_expressions, rng, VIDEO_WEIGHTS)
        if chosen:
            return VideoSample(video, chosen)


def training_image(
    rng: np.random.Generator,
    max_expressions: int = 6,
    max_objects: int = 8,
    weights: dict[str, float] | None = None,
    radius_range: tuple[float, float] = RADIUS_RANGE,
) -> ImageSample:
    """A training image: expressions of the families ``weights`` allows (all by default, referring and
    reasoning), up to ``max_expressions``, no two naming the same objects."""
    while True:
        scene = make_scene(rng, count=int(rng.integers(2, max_objects + 1)), radius_range=radius_range)
        pool = candidates(scene.objects, scene.size, rng)
        chosen = choose(pool, max_expressions, rng, weights or IMAGE_WEIGHTS, distinct=True)
        if chosen:
            return ImageSample(scene, chosen)


def training_clip(
    rng: np.random.Generator, frames: int = 3, max_expressions: int = 4, weights: dict[str, float] | None = None
) -> VideoSample:
    """A short training clip (the state is carried through its frames), expressions of the families ``weights``
    allows, no two naming the same objects."""
    while True:
        video = make_video(rng, frames)
        chosen = choose(video_candidates(video, rng), max_expressions, rng, weights or VIDEO_WEIGHTS, distinct=True)
        if chosen:
            return VideoSample(video, chosen)
