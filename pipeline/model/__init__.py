"""The IVS model: HyperSeg built from transformers classes, with visual-token selection inside."""

from . import load
from .config import PRESETS, HyperSegConfig, InstructSegConfig, config_from_checkpoint, preset
from .hyperseg import HyperSeg
from .instructseg import InstructSeg
from .instructseg_predictor import InstructSegPredictor
from .predictor import EncodedFrames, HyperSegPredictor, PruningConfig, Segmentation
from .save import save_pretrained

__all__ = [
    "PRESETS",
    "EncodedFrames",
    "HyperSeg",
    "HyperSegConfig",
    "HyperSegPredictor",
    "InstructSeg",
    "InstructSegConfig",
    "InstructSegPredictor",
    "PruningConfig",
    "Segmentation",
    "config_from_checkpoint",
    "load",
    "preset",
    "save_pretrained",
]
