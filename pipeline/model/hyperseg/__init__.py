"""HyperSeg (congvvc/HyperSeg): the model, its FVP, its configuration and presets, and the predictor."""

from ..registry import Family, register
from .config import PRESETS, HyperSegConfig, own_parts
from .model import HyperSeg
from .predictor import HyperSegPredictor

register(Family("HyperSeg", HyperSegConfig, HyperSeg, HyperSegPredictor, own_parts, PRESETS))
