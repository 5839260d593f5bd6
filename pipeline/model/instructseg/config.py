"""InstructSeg's configuration: its own parts (the OVP and the VMTF) on the shared ones, and its presets, which
take the shared parts of HyperSeg's."""

import dataclasses
from dataclasses import dataclass, field

from ..config import MaskLlmConfig
from ..hyperseg.config import bench, hyperseg_3b, tiny
from ..parts.llm import LlmSettings
from ..parts.mask_decoder import DecoderSettings
from ..parts.swin import SwinSettings
from .ovp import OvpSettings
from .vmtf import VmtfSettings


@dataclass(frozen=True)
class InstructSegConfig(MaskLlmConfig):
    """Every size of an InstructSeg model. The defaults are the released InstructSeg (``instructseg.*``)."""

    ovp: OvpSettings = field(default_factory=OvpSettings)
    vmtf: VmtfSettings = field(default_factory=VmtfSettings)
    reference_frames: int = 4  # reference_frame_num of the release's video evaluations

    def _checks(self) -> list[tuple[object, object, str]]:
        return super()._checks() + [
            (self.ovp.dim, self.llm.hidden_size, "OVP width vs LLM width"),
            (self.vmtf.llm_hidden, self.llm.hidden_size, "VMTF input vs LLM width"),
            (self.vmtf.in_channels, self.swin.feature_channels[-1], "VMTF input vs Swin res5 channels"),
            (self.vmtf.out_dim, self.decoder.hidden_dim, "SEG embedding vs decoder width"),
        ]


def instructseg() -> InstructSegConfig:
    """The released InstructSeg: HyperSeg-3B's shared parts, the OVP at the LLM width and the VMTF at 1024."""
    return _instructseg_from(hyperseg_3b())


def instructseg_tiny() -> InstructSegConfig:
    """The golden-tiny-instructseg sizes: the shared parts are ``tiny``'s (``hparams.json``)."""
    return _instructseg_from(tiny())


def _instructseg_from(config: MaskLlmConfig) -> InstructSegConfig:
    """InstructSeg on the shared parts of ``config``, its own modules sized by the released rules."""
    return InstructSegConfig(**_shared(config), **own_parts(config.llm, config.swin, config.decoder))


def own_parts(llm: LlmSettings, swin: SwinSettings, decoder: DecoderSettings) -> dict:
    """InstructSeg's own parts sized by the released rules from the shared ones."""
    return {
        "ovp": OvpSettings(dim=llm.hidden_size),
        "vmtf": VmtfSettings.for_swin(swin.embed_dim, llm.hidden_size, decoder.hidden_dim),
    }


def _shared(config: MaskLlmConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(MaskLlmConfig)}


PRESETS = {
    "instructseg": instructseg,
    "instructseg-tiny": instructseg_tiny,
    "instructseg-bench": lambda: _instructseg_from(bench()),
}
