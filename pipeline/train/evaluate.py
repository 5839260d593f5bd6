"""Held-out accuracy of a predictor on the synthetic world, in memory (the jobs measure the same on shards).

Images: LISA's gIoU and cIoU over (expression, mask) pairs (``pipeline.metrics.refer``). Videos: per expression
the mean over frames of J (region IoU, an empty pair counting 1), with the FVP state carried from frame to frame
as the release does, or, for the ablation, every frame from the learned initial state.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics.refer import score_pair, summarize_refer
from ..model.hyperseg.predictor import HyperSegPredictor
from ..synth.samples import ImageSample, VideoSample, generator, refcoco_image, revos_video


@dataclass(frozen=True)
class ImageScores:
    giou: float
    ciou: float
    ious: tuple[float, ...]  # per expression, in order


def heldout_images(count: int, start: int = 0) -> list[ImageSample]:
    """The first ``count`` held-out RefCOCO-style images (split ``val``), the same on every machine."""
    return [refcoco_image(generator("val", "refcoco", i)) for i in range(start, start + count)]


def heldout_videos(count: int, frames: int = 8, start: int = 0) -> list[VideoSample]:
    """The first ``count`` held-out ReVOS-style videos (split ``val``)."""
    return [revos_video(generator("val", "revos", i), frames) for i in range(start, start + count)]


def image_target(sample: ImageSample, targets: Sequence[int]) -> np.ndarray:
    return np.logical_or.reduce([sample.scene.objects[t].visible for t in targets])


def evaluate_images(predictor: HyperSegPredictor, samples: Sequence[ImageSample]) -> ImageScores:
    """gIoU and cIoU of the predictor's top-1 masks (every expression asked with its own kind's wording)."""
    pairs = []
    for sample in samples:
        for kind in ("referring", "reasoning"):
            expressions = [e for e in sample.expressions if e.kind == kind]
            if not expressions:
                continue
            results = predictor.predict(sample.scene.image, [e.text for e in expressions], kind)
            pairs += [
                score_pair(r.mask, image_target(sample, e.targets)) for r, e in zip(results, expressions, strict=True)
            ]
    summary = summarize_refer(pairs)
    return ImageScores(summary.giou, summary.ciou, tuple(p.iou for p in pairs))


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else np.count_nonzero(predicted & truth) / union


def evaluate_video(predictor: HyperSegPredictor, sample: VideoSample, carry: bool = True) -> list[float]:
    """Per expression, the mean over frames of J; ``carry=False`` starts every frame from the initial state."""
    texts = [e.text for e in sample.expressions]
    frames = sample.video.frames
    if carry:
        per_frame = predictor.predict_video(frames, texts)
    else:
        per_frame = [predictor.predict(frame, texts, "video") for frame in frames]
    tracks = sample.video.tracks
    scores = []
    for e, expression in enumerate(sample.expressions):
        truth = [np.logical_or.reduce([tracks[t].masks[f] for t in expression.targets]) for f in range(len(frames))]
        scores.append(float(np.mean([_iou(per_frame[f][e].mask, truth[f]) for f in range(len(frames))])))
    return scores
