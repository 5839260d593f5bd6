"""The synthetic world varies the way real benchmarks do: sizes, aspect ratios, crowding, tiny objects, occlusion."""

import numpy as np

from pipeline.synth import samples
from pipeline.synth.expressions import candidates
from pipeline.synth.scene import make_scene
from pipeline.synth.vocabulary import COLOURS, SHAPES

SCENES = 200


def test_two_hundred_scenes_cover_the_world():
    shorts, longs, orientations, counts, colours, shapes = [], [], set(), set(), set(), set()
    tiny = occluded = multi_target = 0
    for i in range(SCENES):
        rng = samples.generator("train", "train-image", i)
        scene = make_scene(rng)
        height, width = scene.size
        shorts.append(min(height, width))
        longs.append(max(height, width))
        orientations.add("landscape" if width > height else "portrait" if height > width else "square")
        counts.add(len(scene.objects))
        for obj in scene.objects:
            colours.add(obj.colour.name)
            shapes.add(obj.shape)
            diameter = 2 * np.sqrt(obj.full.sum() / np.pi)  # of the circle with the object's area
            tiny += diameter < 0.06 * min(height, width)
            occluded += not np.array_equal(obj.visible, obj.full)
        # Only the plural families name several objects; the others are not worth their time here.
        plural = candidates(scene.objects, scene.size, rng, ("plural", "plural-reasoning"))
        multi_target += sum(len(e.targets) > 1 for family in plural.values() for e in family)
    assert min(shorts) <= 96 and max(longs) >= 480, (min(shorts), max(longs))
    assert {"landscape", "portrait"} <= orientations
    assert counts == set(range(2, 9)), counts
    assert colours == set(COLOURS) and shapes == set(SHAPES)
    assert tiny and occluded and multi_target, (tiny, occluded, multi_target)
