"""The one way to get a predictor for a checkpoint folder or a preset, whichever model family it is."""

from pathlib import Path

from .config import MaskLlmConfig, config_from_checkpoint, preset
from .instructseg_predictor import InstructSegPredictor
from .mask_llm import model_for
from .predictor import HyperSegPredictor

PREDICTORS = (HyperSegPredictor, InstructSegPredictor)


def predictor_class(config: MaskLlmConfig) -> type[HyperSegPredictor]:
    """``HyperSegPredictor`` for a HyperSeg config, ``InstructSegPredictor`` for an InstructSeg one."""
    model_class = model_for(config)
    return next(cls for cls in PREDICTORS if cls.model_class is model_class)


def from_pretrained(directory: str | Path, **options) -> HyperSegPredictor:
    """The predictor of a released checkpoint folder (``config.json``'s ``architectures`` picks the family).

    ``options`` go to the predictor's ``from_pretrained`` (pruning, dtype, device, attn_implementation, config
    overrides).
    """
    return predictor_class(config_from_checkpoint(directory)).from_pretrained(directory, **options)


def from_preset(name: str, **options) -> HyperSegPredictor:
    """The predictor of a preset with seeded random weights (see ``PRESETS``); options as ``from_preset``."""
    return predictor_class(preset(name)).from_preset(name, **options)
