"""The one way to get a predictor for a checkpoint folder or a preset, whichever model family it is."""

from pathlib import Path

from .config import MaskLlmConfig, config_from_checkpoint, preset
from .registry import family_of


def predictor_class(config: MaskLlmConfig) -> type:
    """The predictor class of a config's family (``HyperSegPredictor``, ``InstructSegPredictor``)."""
    return family_of(config).predictor_class


def from_pretrained(directory: str | Path, **options):
    """The predictor of a released checkpoint folder (``config.json``'s ``architectures`` picks the family).

    ``options`` go to the predictor's ``from_pretrained`` (pruning, dtype, device, attn_implementation, config
    overrides).
    """
    return predictor_class(config_from_checkpoint(directory)).from_pretrained(directory, **options)


def from_preset(name: str, **options):
    """The predictor of a preset with seeded random weights (see ``PRESETS``); options as ``from_preset``."""
    return predictor_class(preset(name)).from_preset(name, **options)
