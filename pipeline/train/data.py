"""Training batches from the synthetic world: images with their expressions, and short video clips.

Step ``s`` always gets the same samples (seeded by the step's sample indices in the ``train`` split), so a resumed
run sees exactly the data it would have seen, and no training sample is ever drawn from the held-out seeds.

A curriculum (``PHASES``, switched at ``DataSettings.phases``): a model trained from scratch first finds the
objects and picks the most salient one whatever the words say (measured: with every family from the start, after
600 steps all expressions of an image chose the same object). So it first sees two or three large objects and
expressions that a colour or shape word alone resolves, then sizes, places and some relations and reasoning,
then everything, motion included. An image's expressions name different objects, so the words are what decides.
Small steps (two images, or one clip) give many updates in the time budget.
"""

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..synth.expressions import FAMILIES
from ..synth.samples import IMAGE_WEIGHTS, VIDEO_WEIGHTS, generator, training_clip, training_image
from ..synth.scene import RADIUS_RANGE
from ..synth.video import MOTION_FAMILIES


@dataclass(frozen=True)
class Phase:
    """What the samples of a stretch of training hold."""

    max_objects: int
    radius_range: tuple[float, float]  # object radius as a fraction of the image's short side
    image_weights: dict[str, float]  # family -> weight (missing: 0)
    video_weights: dict[str, float]
    reasoning_share: float  # of images whose expressions include reasoning ones, those asked that way


_NONE = dict.fromkeys([*FAMILIES, *MOTION_FAMILIES], 0.0)
PHASES = (
    Phase(3, (0.08, 0.22), {**_NONE, "attribute": 1.0, "plural": 0.2}, {**_NONE, "attribute": 1.0}, 0.0),
    Phase(
        5,
        (0.04, 0.2),
        {
            **_NONE,
            "attribute": 1.0,
            "size": 1.0,
            "place": 1.0,
            "relation": 0.5,
            "plural": 0.3,
            "same-colour": 0.3,
            "same-shape": 0.3,
            "extreme": 0.3,
            "odd-one-out": 0.3,
        },
        {**_NONE, "attribute": 1.0, "size": 0.5, "direction": 1.0, "moving": 0.5, "still": 0.5, "plural": 0.2},
        0.15,
    ),
    Phase(8, RADIUS_RANGE, {**_NONE, **{f: 1.0 for f in FAMILIES}, **IMAGE_WEIGHTS}, {**_NONE, **VIDEO_WEIGHTS}, 0.3),
)


@dataclass
class ImageItem:
    """One image: its expressions (one prompt wording), their target masks, and every object's mask."""

    image: np.ndarray
    task: str  # "referring" or "reasoning"
    texts: list[str]
    masks: list[np.ndarray]
    objects: np.ndarray  # (O, H, W) bool, the visible mask of every object
    named: list[tuple[int, ...]]  # per expression, the objects it names


@dataclass
class ClipItem:
    """One clip: its frames, its expressions and their targets per expression, per frame; every object's masks."""

    frames: list[np.ndarray]
    texts: list[str]
    masks: list[list[np.ndarray]]
    objects: list[np.ndarray]  # per frame, (O, H, W) bool
    named: list[tuple[int, ...]]


@dataclass
class Batch:
    step: int
    images: list[ImageItem]
    clips: list[ClipItem]


@dataclass(frozen=True)
class DataSettings:
    """What one step holds, and the curriculum over object counts."""

    images_per_step: int = 2
    clips_per_step: int = 1
    video_every: int = 4  # every n-th step is a clip step
    clip_frames: int = 3
    max_expressions: int = 8
    phases: tuple[int, ...] = (700, 1600)  # the steps at which PHASES[1] and PHASES[2] begin
    jpeg: float = 0.5  # share of frames passed through JPEG (quality 50-95), as dataset images are

    def phase(self, step: int) -> Phase:
        return PHASES[sum(step >= start for start in self.phases)]


def jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(50, 96)))
    return np.asarray(Image.open(buffer).convert("RGB"))


def _target(masks: list[np.ndarray], targets: tuple[int, ...]) -> np.ndarray:
    return np.logical_or.reduce([masks[t] for t in targets])


def image_item(index: int, step: int, settings: DataSettings) -> ImageItem:
    rng = generator("train", "train-image", index)
    phase = settings.phase(step)
    sample = training_image(rng, settings.max_expressions, phase.max_objects, phase.image_weights, phase.radius_range)
    reasoning = [e for e in sample.expressions if e.kind == "reasoning"]
    referring = [e for e in sample.expressions if e.kind == "referring"]
    chosen, task = referring, "referring"
    if reasoning and (not referring or rng.random() < phase.reasoning_share):
        chosen, task = reasoning, "reasoning"
    visible = [o.visible for o in sample.scene.objects]
    image = jpeg(rng, sample.scene.image) if rng.random() < settings.jpeg else sample.scene.image
    masks = [_target(visible, e.targets) for e in chosen]
    return ImageItem(image, task, [e.text for e in chosen], masks, np.stack(visible), [e.targets for e in chosen])


def clip_item(index: int, step: int, settings: DataSettings) -> ClipItem:
    rng = generator("train", "train-video", index)
    sample = training_clip(
        rng, settings.clip_frames, min(settings.max_expressions, 4), settings.phase(step).video_weights
    )
    frames = [jpeg(rng, f) if rng.random() < settings.jpeg else f for f in sample.video.frames]
    tracks = sample.video.tracks
    masks = [
        [np.logical_or.reduce([tracks[t].masks[f] for t in e.targets]) for f in range(len(frames))]
        for e in sample.expressions
    ]
    objects = [np.stack([t.masks[f] for t in tracks]) for f in range(len(frames))]
    return ClipItem(
        frames, [e.text for e in sample.expressions], masks, objects, [e.targets for e in sample.expressions]
    )


def make_batch(step: int, settings: DataSettings) -> Batch:
    """The samples of training step ``step`` (a clip step every ``video_every`` steps)."""
    if settings.video_every and step % settings.video_every == settings.video_every - 1:
        n = settings.clips_per_step
        return Batch(step, [], [clip_item(step * n + i, step, settings) for i in range(n)])
    n = settings.images_per_step
    return Batch(step, [image_item(step * n + i, step, settings) for i in range(n)], [])


class Batches(torch.utils.data.IterableDataset):
    """Steps ``start..stop-1``'s batches, for a ``DataLoader`` worker to build ahead of the model."""

    def __init__(self, start: int, stop: int, settings: DataSettings):
        super().__init__()
        self.start, self.stop, self.settings = start, stop, settings

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield make_batch(step, self.settings)
