"""Training batches from the synthetic world: images with their expressions, and short video clips.

Step ``s`` always gets the same samples (seeded by the step's sample indices in the ``train`` split), so a resumed
run sees exactly the data it would have seen, and no training sample is ever drawn from the held-out seeds.
"""

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..synth.samples import generator, training_clip, training_image


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

    images_per_step: int = 4
    clips_per_step: int = 2
    video_every: int = 4  # every n-th step is a clip step
    clip_frames: int = 3
    max_expressions: int = 8
    reasoning_share: float = 0.3  # of images whose expressions include reasoning ones, those asked that way
    ramp_steps: int = 600  # objects per scene rise from 4 to 8 over these steps
    jpeg: float = 0.5  # share of frames passed through JPEG (quality 50-95), as dataset images are


def jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(50, 96)))
    return np.asarray(Image.open(buffer).convert("RGB"))


def _target(masks: list[np.ndarray], targets: tuple[int, ...]) -> np.ndarray:
    return np.logical_or.reduce([masks[t] for t in targets])


def image_item(index: int, step: int, settings: DataSettings) -> ImageItem:
    rng = generator("train", "train-image", index)
    max_objects = 4 + min(4, 4 * step // max(settings.ramp_steps, 1))
    sample = training_image(rng, settings.max_expressions, max_objects)
    reasoning = [e for e in sample.expressions if e.kind == "reasoning"]
    referring = [e for e in sample.expressions if e.kind == "referring"]
    chosen, task = referring, "referring"
    if reasoning and (not referring or rng.random() < settings.reasoning_share):
        chosen, task = reasoning, "reasoning"
    visible = [o.visible for o in sample.scene.objects]
    image = jpeg(rng, sample.scene.image) if rng.random() < settings.jpeg else sample.scene.image
    masks = [_target(visible, e.targets) for e in chosen]
    return ImageItem(image, task, [e.text for e in chosen], masks, np.stack(visible), [e.targets for e in chosen])


def clip_item(index: int, settings: DataSettings) -> ClipItem:
    rng = generator("train", "train-video", index)
    sample = training_clip(rng, settings.clip_frames, min(settings.max_expressions, 4))
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
        return Batch(step, [], [clip_item(step * n + i, settings) for i in range(n)])
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
