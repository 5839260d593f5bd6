"""The IVS model: HyperSeg built from transformers classes, with visual-token selection inside."""

from .config import PRESETS, HyperSegConfig, config_from_checkpoint, preset
from .hyperseg import HyperSeg
from .predictor import EncodedFrames, HyperSegPredictor, PruningConfig, Segmentation

__all__ = [
    "PRESETS",
    "EncodedFrames",
    "HyperSeg",
    "HyperSegConfig",
    "HyperSegPredictor",
    "PruningConfig",
    "Segmentation",
    "config_from_checkpoint",
    "preset",
]
