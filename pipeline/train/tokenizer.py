"""The tokenizer of the synthetic-world model: byte-level BPE trained on the templates and the world's phrases.

Byte-level, so any text still tokenizes; trained on a fixed, seeded set of the world's expressions, so that its
words (colours, shapes, places, relations, motions) are mostly single ids, which a model this small binds far more
easily than byte fragments. Deterministic: the same ids on every machine.
"""

from pathlib import Path

from ..model.parts.prompt import build_tiny_tokenizer
from ..synth.expressions import candidates
from ..synth.samples import generator
from ..synth.scene import make_scene
from ..synth.video import make_video, video_candidates

# BPE ids at most (the corpus runs out of merges sooner); [SEG] comes next, within the ``synth`` preset's 768.
VOCAB_SIZE = 767
CORPUS_SCENES = 200
CORPUS_VIDEOS = 50


def synth_corpus(scenes: int = CORPUS_SCENES, videos: int = CORPUS_VIDEOS) -> list[str]:
    """Every expression of the first ``scenes`` training scenes and ``videos`` training videos."""
    texts = []
    for index in range(scenes):
        rng = generator("train", "train-image", 10**9 + index)  # an index range training never reaches
        scene = make_scene(rng, size=(96, 128))
        texts += [e.text for family in candidates(scene.objects, scene.size, rng).values() for e in family]
    for index in range(videos):
        rng = generator("train", "train-video", 10**9 + index)
        video = make_video(rng, 4, size=(96, 128))
        texts += [e.text for family in video_candidates(video, rng).values() for e in family]
    return texts


def build_synth_tokenizer(directory: str | Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Write the tokenizer files (released layout, ``[SEG]`` added) to ``directory``."""
    return build_tiny_tokenizer(directory, vocab_size, corpus=synth_corpus())
