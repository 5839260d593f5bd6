"""Referring expressions of a scene, each with the exact set of objects it names.

Every expression is built from a rule whose referents are computed on the scene, and kept only when the words
pick out exactly the intended objects with a margin (no borderline "left of"). Families:

- ``attribute``: "the red circle", "the star", "the blue shape": a description only the target fits;
- ``size``: "the small red circle" (two fit, areas differ by ``SIZE_RATIO``), "the largest square";
- ``place``: "the red circle on the left" (two fit), "the leftmost triangle", "the star at the top",
  "the lowest circle";
- ``relation``: "the circle left of the blue square", "the shape above the red star" (the anchor is unique);
- ``plural``: "the red shapes", "both circles", "all the triangles": every object that fits (several targets);
- reasoning sentences (ReasonSeg wording, kind ``reasoning``): ``same-colour`` ("the shape with the same colour
  as the circle"), ``same-shape``, ``extreme`` ("which object is the biggest?"), ``odd-one-out`` ("the shape whose
  colour differs from all the others"), and ``plural-reasoning`` ("all the shapes with the same colour as the
  star").

Positions are read from the visible masks (their centroids), sizes from the full masks.
"""

from dataclasses import dataclass

import numpy as np

from .scene import SceneObject
from .vocabulary import NOUNS, SIZE_RATIO

# Margins, as fractions of the image side along the axis concerned.
PLACE_GAP = 0.1  # "on the left" of two, "leftmost" of several: the next one is at least this much further right
RELATION_GAP = 0.06  # "left of": at least this far left of the anchor, and more left than above or below
EXTREME_RATIO = 1.6  # "the largest": at least this much larger than the next
REFERRING_FAMILIES = ("attribute", "size", "place", "relation", "plural")
REASONING_FAMILIES = ("same-colour", "same-shape", "extreme", "odd-one-out", "plural-reasoning")


@dataclass(frozen=True)
class SynthExpression:
    """One expression: its text, the indices of the objects it names, its family and its kind."""

    text: str
    targets: tuple[int, ...]
    family: str
    kind: str = "referring"  # or "reasoning" (the ReasonSeg wording)


Descriptor = tuple[str | None, str | None]  # (colour, shape), None where left out


def fits(obj: SceneObject, d: Descriptor) -> bool:
    return (d[0] is None or obj.colour.name == d[0]) and (d[1] is None or obj.shape == d[1])


def phrase(d: Descriptor, rng: np.random.Generator, plural: bool = False) -> str:
    """``("red", "circle")`` -> "red circle"; ``("red", None)`` -> "red shape"; ``(None, None)`` -> "object"."""
    colour, shape = d
    noun = shape or str(rng.choice(NOUNS))
    if plural:
        noun += "s"
    elif colour is not None and shape is None and rng.random() < 0.3:
        noun = "one"
    return f"{colour} {noun}" if colour else noun


def descriptors(obj: SceneObject) -> list[Descriptor]:
    return [(obj.colour.name, obj.shape), (obj.colour.name, None), (None, obj.shape), (None, None)]


def matching(objects: list[SceneObject], d: Descriptor) -> list[int]:
    return [i for i, o in enumerate(objects) if fits(o, d)]


def unique_descriptor(objects: list[SceneObject], i: int, rng: np.random.Generator) -> Descriptor | None:
    """A description only object ``i`` fits, shorter ones first (random among equally short)."""
    d = descriptors(objects[i])
    single = [x for x in (d[1], d[2]) if matching(objects, x) == [i]]
    if single:
        return single[int(rng.integers(len(single)))]
    return d[0] if matching(objects, d[0]) == [i] else None


def _centres(objects: list[SceneObject]) -> np.ndarray:
    return np.array([o.centre for o in objects])


def _extreme(values: np.ndarray, members: list[int], gap: float, lowest: bool) -> int | None:
    """The member with the lowest (or highest) value if it beats every other member by ``gap``."""
    order = sorted(members, key=lambda m: values[m], reverse=not lowest)
    if len(order) < 2 or abs(values[order[0]] - values[order[1]]) < gap:
        return None
    return order[0]


# ------------------------------------------------------------------------------------------- referring


def attribute(objects, t, rng, size) -> list[SynthExpression]:
    d = unique_descriptor(objects, t, rng)
    return [SynthExpression(f"the {phrase(d, rng)}", (t,), "attribute")] if d else []


def size_words(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    areas = np.array([o.area for o in objects], dtype=np.float64)
    for d in descriptors(objects[t])[:3]:
        members = matching(objects, d)
        if len(members) < 2:
            continue
        for largest in (True, False):
            ordered = sorted(members, key=lambda m: areas[m], reverse=largest)
            first, second = areas[ordered[0]], areas[ordered[1]]
            ratio = first / second if largest else second / first
            if ordered[0] != t:
                continue
            if len(members) == 2 and ratio >= SIZE_RATIO:
                word = str(rng.choice(["large", "big"])) if largest else str(rng.choice(["small", "little"]))
                out.append(SynthExpression(f"the {word} {phrase(d, rng)}", (t,), "size"))
            elif ratio >= EXTREME_RATIO:
                word = str(rng.choice(["largest", "biggest"])) if largest else "smallest"
                out.append(SynthExpression(f"the {word} {phrase(d, rng)}", (t,), "size"))
    return out


def place_words(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    height, width = size
    centres = _centres(objects)
    axes = (
        (0, width, ("on the left", "leftmost"), ("on the right", "rightmost")),
        (1, height, ("at the top", str(rng.choice(["topmost", "highest"]))), ("at the bottom", "lowest")),
    )
    for d in descriptors(objects[t])[:3]:
        members = matching(objects, d)
        if len(members) < 2:
            continue
        for axis, extent, low_words, high_words in axes:
            for lowest, (pair_word, many_word) in ((True, low_words), (False, high_words)):
                if _extreme(centres[:, axis], members, PLACE_GAP * extent, lowest) != t:
                    continue
                if len(members) == 2 and rng.random() < 0.6:
                    out.append(SynthExpression(f"the {phrase(d, rng)} {pair_word}", (t,), "place"))
                else:
                    out.append(SynthExpression(f"the {many_word} {phrase(d, rng)}", (t,), "place"))
    return out


def relation_holds(relation: str, dx: float, dy: float, gap: tuple[float, float], strict: bool) -> bool:
    """Whether a point at ``(dx, dy)`` from the anchor is ``relation`` of it.

    Strict: at least the margin away along the relation's axis, and further along it than across it. Relaxed
    (what every non-target must fail): half the margin, and up to 1.5 times further across than along.
    """
    along, across, margin = {
        "left of": (-dx, abs(dy), gap[0]),
        "right of": (dx, abs(dy), gap[0]),
        "above": (-dy, abs(dx), gap[1]),
        "below": (dy, abs(dx), gap[1]),
    }[relation]
    if strict:
        return along >= margin and across <= along
    return along >= margin / 2 and across <= 1.5 * along


def relation_words(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    height, width = size
    gap = (RELATION_GAP * width, RELATION_GAP * height)
    centres = _centres(objects)
    for a in range(len(objects)):
        if a == t:
            continue
        anchor = unique_descriptor(objects, a, rng)
        if anchor is None:
            continue
        for d in descriptors(objects[t]):
            members = [m for m in matching(objects, d) if m != a]
            if len(members) < 2:
                continue
            for relation in ("left of", "right of", "above", "below"):
                dx, dy = centres[t] - centres[a]
                if not relation_holds(relation, dx, dy, gap, strict=True):
                    continue
                others = [m for m in members if m != t]
                if any(relation_holds(relation, *(centres[m] - centres[a]), gap, strict=False) for m in others):
                    continue
                word = relation
                if relation in ("left of", "right of") and rng.random() < 0.4:
                    word = "to the " + relation.replace(" of", "") + " of"
                out.append(SynthExpression(f"the {phrase(d, rng)} {word} the {phrase(anchor, rng)}", (t,), "relation"))
            break  # the most specific description with two or more members
    return out


def plural_words(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    for d in descriptors(objects[t])[:3]:
        members = matching(objects, d)
        if not 2 <= len(members) <= 4 or len(members) == len(objects):
            continue
        words = {2: ["both", "the two"], 3: ["the three", "all the"], 4: ["all the", "the four"]}[len(members)]
        lead = str(rng.choice(words + ["the"]))
        out.append(SynthExpression(f"{lead} {phrase(d, rng, plural=True)}", tuple(members), "plural"))
    return out


# ------------------------------------------------------------------------------------------- reasoning


def same_colour(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    for a in range(len(objects)):
        if a == t or objects[a].colour.name != objects[t].colour.name:
            continue
        anchor = (None, objects[a].shape)
        if matching(objects, anchor) != [a]:
            continue
        same = [m for m in range(len(objects)) if m != a and objects[m].colour.name == objects[a].colour.name]
        if same != [t]:
            continue
        a_text = objects[a].shape
        text = str(
            rng.choice(
                [
                    f"the shape with the same colour as the {a_text}",
                    f"which object has the same colour as the {a_text}?",
                    f"find the shape that shares its colour with the {a_text}.",
                ]
            )
        )
        out.append(SynthExpression(text, (t,), "same-colour", "reasoning"))
    return out


def same_shape(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    for a in range(len(objects)):
        if a == t or objects[a].shape != objects[t].shape:
            continue
        if matching(objects, (objects[a].colour.name, None)) != [a]:
            continue
        same = [m for m in range(len(objects)) if m != a and objects[m].shape == objects[a].shape]
        if same != [t]:
            continue
        colour = objects[a].colour.name
        text = str(
            rng.choice(
                [
                    f"the object with the same shape as the {colour} one",
                    f"which shape is of the same kind as the {colour} one?",
                ]
            )
        )
        out.append(SynthExpression(text, (t,), "same-shape", "reasoning"))
    return out


def extreme(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    height, width = size
    everyone = list(range(len(objects)))
    areas = np.array([o.area for o in objects], dtype=np.float64)
    ranked = sorted(everyone, key=lambda m: areas[m], reverse=True)
    if len(ranked) >= 2 and ranked[0] == t and areas[ranked[0]] >= EXTREME_RATIO * areas[ranked[1]]:
        text = str(rng.choice(["which object is the biggest?", "the largest shape in the picture"]))
        out.append(SynthExpression(text, (t,), "extreme", "reasoning"))
    if len(ranked) >= 2 and ranked[-1] == t and areas[ranked[-2]] >= EXTREME_RATIO * areas[ranked[-1]]:
        text = str(rng.choice(["which object is the smallest?", "the smallest shape in the picture"]))
        out.append(SynthExpression(text, (t,), "extreme", "reasoning"))
    centres = _centres(objects)
    sides = (
        (0, width, True, "which shape is furthest to the left?"),
        (0, width, False, "the object closest to the right edge of the image"),
        (1, height, True, "which object is nearest to the top of the picture?"),
        (1, height, False, "the shape closest to the bottom edge"),
    )
    for axis, extent, lowest, text in sides:
        if _extreme(centres[:, axis], everyone, PLACE_GAP * extent, lowest) == t:
            out.append(SynthExpression(text, (t,), "extreme", "reasoning"))
    return out


def odd_one_out(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    others = [o for i, o in enumerate(objects) if i != t]
    if len(others) < 2:
        return out
    if len({o.colour.name for o in others}) == 1 and objects[t].colour.name != others[0].colour.name:
        text = "the shape whose colour differs from all the others"
        out.append(SynthExpression(text, (t,), "odd-one-out", "reasoning"))
    if len({o.shape for o in others}) == 1 and objects[t].shape != others[0].shape:
        text = "which object has a different shape from the rest?"
        out.append(SynthExpression(text, (t,), "odd-one-out", "reasoning"))
    return out


def plural_reasoning(objects, t, rng, size) -> list[SynthExpression]:
    out = []
    for a in range(len(objects)):
        if a == t or matching(objects, (None, objects[a].shape)) != [a]:
            continue
        same = [m for m in range(len(objects)) if m != a and objects[m].colour.name == objects[a].colour.name]
        if len(same) >= 2 and t == same[0]:
            text = f"all the shapes with the same colour as the {objects[a].shape}"
            out.append(SynthExpression(text, tuple(same), "plural-reasoning", "reasoning"))
    return out


FAMILIES = {
    "attribute": attribute,
    "size": size_words,
    "place": place_words,
    "relation": relation_words,
    "plural": plural_words,
    "same-colour": same_colour,
    "same-shape": same_shape,
    "extreme": extreme,
    "odd-one-out": odd_one_out,
    "plural-reasoning": plural_reasoning,
}


def candidates(
    objects: list[SceneObject], size: tuple[int, int], rng: np.random.Generator, families=tuple(FAMILIES)
) -> dict[str, list[SynthExpression]]:
    """Every expression of the given families, per family (texts unique within the scene)."""
    out: dict[str, list[SynthExpression]] = {}
    seen: set[str] = set()
    for family in families:
        for t in range(len(objects)):
            for expression in FAMILIES[family](objects, t, rng, size):
                if expression.text not in seen:
                    seen.add(expression.text)
                    out.setdefault(family, []).append(expression)
    return out


def choose(
    pool: dict[str, list[SynthExpression]],
    count: int,
    rng: np.random.Generator,
    weights: dict[str, float] | None = None,
    *,
    distinct: bool = False,
) -> list[SynthExpression]:
    """Up to ``count`` expressions: a family drawn by ``weights`` (default equal), then one of its expressions.

    ``distinct``: no two chosen expressions name the same objects (an image's expressions then contrast).
    """
    pool = {f: list(v) for f, v in pool.items() if v}
    chosen = []
    while pool and len(chosen) < count:
        names = sorted(pool)
        p = np.array([(weights or {}).get(n, 1.0) for n in names], dtype=np.float64)
        if p.sum() <= 0:
            break
        family = names[int(rng.choice(len(names), p=p / p.sum()))]
        chosen.append(pool[family].pop(int(rng.integers(len(pool[family])))))
        if distinct:
            pool = {f: [e for e in v if set(e.targets) != set(chosen[-1].targets)] for f, v in pool.items()}
        pool = {f: v for f, v in pool.items() if v}
    return chosen
