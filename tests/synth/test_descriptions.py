"""Every candidate expression's mask matches its description, read back from the text and the rendered pixels."""

import re
from functools import cache

import numpy as np
import pytest

from pipeline.synth import samples
from pipeline.synth.expressions import FAMILIES, candidates
from pipeline.synth.scene import make_scene
from pipeline.synth.video import MOTION_FAMILIES, VIDEO_STATIC_FAMILIES, make_video, video_candidates
from pipeline.synth.vocabulary import COLOURS
from pipeline.synth.write import labelme_raster

from .meaning import (
    Unclear,
    measure_scene,
    measure_video,
    parse,
    referents,
    video_full_masks,
    visible_from_full,
)

IMAGES, LABELME_IMAGES, VIDEOS = 30, 10, 10
# Words whose opposite names other objects: flipping one must change what the text means.
OPPOSITES = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "up": "down",
    "down": "up",
    "top": "bottom",
    "bottom": "top",
    "leftmost": "rightmost",
    "rightmost": "leftmost",
    "topmost": "lowest",
    "highest": "lowest",
    "lowest": "highest",
    "large": "small",
    "big": "little",
    "small": "large",
    "little": "big",
    "largest": "smallest",
    "biggest": "smallest",
    "smallest": "largest",
}


def _scenes():
    """Scenes from the training stream's seeds, and some drawn with the ReasonSeg (labelme) rasteriser."""
    for i in range(IMAGES):
        yield f"scene {i}", make_scene(samples.generator("val", "train-image", i))
    for i in range(LABELME_IMAGES):
        yield f"labelme scene {i}", make_scene(samples.generator("val", "reasonseg", i), raster=labelme_raster)


def _videos():
    for i in range(VIDEOS):
        yield f"video {i}", make_video(samples.generator("val", "train-video", i), 8 if i % 2 else 5)


def _mismatch(where: str, text: str, targets: tuple[int, ...], things, size) -> str | None:
    try:
        meant = referents(text, things, size)
    except Unclear as error:
        return f"{where}: {text!r} is unclear ({error}); generator says {targets}"
    if meant != frozenset(targets):
        return f"{where}: {text!r} means {sorted(meant)}, generator says {targets}"
    return None


@cache
def _image_expressions() -> list[tuple]:
    """(where, scene, measured objects, every candidate expression) per scene, built once for the module."""
    out = []
    for where, scene in _scenes():
        pool = candidates(scene.objects, scene.size, np.random.default_rng(0))
        out.append((where, scene, measure_scene(scene), [e for family in pool.values() for e in family]))
    return out


def test_every_image_expression_names_exactly_what_its_words_mean():
    problems, families, count = [], set(), 0
    for where, scene, things, pool in _image_expressions():
        colours = [o.colour.name for o in scene.objects]
        assert [t.colour for t in things] == colours, f"{where}: colours read back {[t.colour for t in things]}"
        for expression in pool:
            count += 1
            families.add(expression.family)
            problems.append(_mismatch(where, expression.text, expression.targets, things, scene.size))
    assert [p for p in problems if p] == []
    assert count > 500 and families == set(FAMILIES), (count, families)


def test_every_video_expression_names_exactly_what_its_words_mean():
    problems, families = [], set()
    for where, video in _videos():
        fulls = video_full_masks(video)
        for t, frame_fulls in enumerate(fulls):  # the full masks whose motion is read are the GT's
            assert all(
                np.array_equal(track.masks[t], visible)
                for track, visible in zip(video.tracks, visible_from_full(frame_fulls), strict=True)
            ), f"{where} frame {t}: visible masks are not the full masks minus later ones"
        pool = [e for family in video_candidates(video, np.random.default_rng(0)).values() for e in family]
        for frame in range(len(video.frames)):
            things = measure_video(video, fulls, frame)
            assert [t.colour for t in things] == [tr.look.colour.name for tr in video.tracks], f"{where} frame {frame}"
            for expression in pool:
                families.add(expression.family)
                if frame == 0 or expression.family in VIDEO_STATIC_FAMILIES:  # static words hold in every frame
                    problems.append(
                        _mismatch(f"{where} frame {frame}", expression.text, expression.targets, things, video.size)
                    )
    assert [p for p in problems if p] == []
    assert set(MOTION_FAMILIES) <= families, families


def _flipped(text: str) -> list[str]:
    """The text with one opposite word swapped, or one colour word replaced by each other colour.

    A relation's anchor keeps its colour: the target may well lie left of another anchor too.
    """
    words = text.split(" ")
    out, anchor = [], False
    for i, word in enumerate(words):
        bare = word.rstrip("?.")
        anchor = anchor or bare in ("of", "above", "below")
        if bare in OPPOSITES:
            options = [OPPOSITES[bare]]
        else:
            options = [c for c in COLOURS if c != bare] if bare in COLOURS and not anchor else []
        out += [" ".join(words[:i] + [word.replace(bare, other)] + words[i + 1 :]) for other in options]
    return out


def test_the_reading_is_not_vacuous():
    """Changing a colour or flipping a direction or size word never still names the generator's targets."""
    checked = 0
    for where, scene, things, pool in _image_expressions():
        for expression in pool:
            for text in _flipped(expression.text):
                try:
                    meant = referents(text, things, scene.size)
                except Unclear:
                    continue
                checked += 1
                assert meant != frozenset(expression.targets), f"{where}: {text!r} still names {expression.targets}"
    assert checked > 100


@pytest.mark.parametrize(
    ("text", "template"),
    [
        ("the red one", "attribute"),
        ("the shape left of the blue square", "relation"),
        ("the green circle to the right of the red one", "relation"),
        ("both circles", "plural"),
        ("the object moving up", "moving-way"),
        ("the shapes moving left", "plural-moving-way"),
        ("the still star", "still"),
        ("find the shape that shares its colour with the star.", "same-colour"),
        ("which shape is of the same kind as the yellow one?", "same-shape"),
    ],
)
def test_templates(text, template):
    assert parse(text)[0] == template


def test_unknown_wording_is_unclear():
    with pytest.raises(Unclear, match=re.escape("no template")):
        parse("the crimson circle")
