"""The model families: each registers its config, model and predictor classes and its presets here, and the shared
code (reading a checkpoint's configs, loading, saving, presets) looks them up here rather than importing the
families. ``pipeline.model`` imports every family, so they are registered before anything asks."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One model family (``HyperSeg``, ``InstructSeg``): what a checkpoint's ``architectures`` names."""

    name: str
    config_class: type
    model_class: type
    predictor_class: type
    # The family's own config parts, sized by the released rules from the shared (llm, swin, decoder) settings:
    # a checkpoint's config.json stores none of them.
    own_parts: Callable[..., dict]
    presets: dict[str, Callable[[], object]]
    extra_fields: tuple[str, ...] = ()  # config fields a caller may override besides the parts


FAMILIES: dict[str, Family] = {}
PRESETS: dict[str, Callable[[], object]] = {}  # every family's, by name


def register(family: Family) -> None:
    clash = sorted(set(family.presets) & set(PRESETS))
    if family.name in FAMILIES or clash:
        raise ValueError(f"family {family.name} is registered twice or reuses presets {clash}")
    FAMILIES[family.name] = family
    PRESETS.update(family.presets)


def family(name: str) -> Family:
    return FAMILIES[name]


def family_names() -> tuple[str, ...]:
    return tuple(FAMILIES)


def family_of(config: object) -> Family:
    """The family whose config class ``config`` is (exactly: a family's config may subclass another's)."""
    for f in FAMILIES.values():
        if type(config) is f.config_class:
            return f
    raise TypeError(f"no model family for a {type(config).__name__}")


def model_for(config: object) -> type:
    """The model class of a config (``HyperSegConfig`` -> ``HyperSeg``, ``InstructSegConfig`` -> ``InstructSeg``)."""
    return family_of(config).model_class
