"""The IVS models: HyperSeg and InstructSeg built from transformers classes, with visual-token selection inside.

``parts/`` holds what both families are built from, ``hyperseg/`` and ``instructseg/`` what each adds (and registers
in ``registry``), ``token_pruning/`` the pruning that happens inside a model; ``config``, ``load`` and ``save`` are
the family-agnostic ways in.
"""

from . import hyperseg, instructseg, load  # noqa: F401 (registers the families)
from .config import PRESETS, config_from_checkpoint, preset
from .hyperseg import HyperSeg, HyperSegConfig, HyperSegPredictor
from .hyperseg.predictor import EncodedFrames, PruningConfig, Segmentation
from .instructseg import InstructSeg, InstructSegConfig, InstructSegPredictor
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
