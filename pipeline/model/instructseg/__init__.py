"""InstructSeg (congvvc/InstructSeg): the model, its OVP and VMTF, its configuration and presets, and the
predictor (HyperSeg's, with reference frames and the VMTF's text fusion)."""

from ..registry import Family, register
from .config import PRESETS, InstructSegConfig, own_parts
from .model import InstructSeg
from .predictor import InstructSegPredictor

register(
    Family(
        "InstructSeg",
        InstructSegConfig,
        InstructSeg,
        InstructSegPredictor,
        own_parts,
        PRESETS,
        extra_fields=("reference_frames",),
    )
)
