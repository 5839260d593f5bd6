"""InstructSeg (congvvc/InstructSeg@0134314): HyperSeg's parts with the OVP and the VMTF in place of the FVP.

The ``<temporal>`` slot, before ``<image>`` in the prompt, holds the OVP's 128 tokens per reference frame,
computed from the frames' projected SigLIP tokens and the instruction; the SEG embedding comes from the VMTF
over the key frame's Swin res5 (model.md §1.10). ``instructseg_predictor.py`` turns frames and expressions into
masks.
"""

import torch

from ..parts.checkpoint import Route
from ..parts.mask_decoder import MaskDecoderOutput
from ..parts.mask_llm import MaskLlm
from ..parts.pixel_decoder import PixelDecoderOutput
from .config import InstructSegConfig
from .ovp import ObjectVideoPerceiver
from .vmtf import TextFusion

OVP_PREFIXES = ("temporal_query", "ovp_layers.")
VMTF_PREFIXES = (
    "local_project.",
    "text_vmtf_projector.",
    "origin_SEG_token_projector.",
    "vmtf_layers.",
    "SEG_token_projector.",
)


class InstructSeg(MaskLlm):
    """The InstructSeg weights: the shared parts, the OVP and the VMTF."""

    config_class = InstructSegConfig

    def __init__(self, config: InstructSegConfig, attn_implementation: str = "sdpa"):
        super().__init__(config, attn_implementation)
        self.ovp = ObjectVideoPerceiver(config.ovp)
        self.vmtf = TextFusion(config.vmtf)

    def routes(self) -> list[Route]:
        return [
            *super().routes(),
            *(Route(p, "ovp." + p) for p in OVP_PREFIXES),
            *(Route(p, "vmtf." + p) for p in VMTF_PREFIXES),
        ]

    def seg_embeddings(self, refer: list[torch.Tensor], res5: torch.Tensor) -> torch.Tensor:
        """``(E, 1, decoder width)`` SEG embeddings from each expression's ``<refer>`` states and its frame's res5.

        Args:
            refer: per expression, ``(n_ref, hidden)`` the LLM's states over its ``<refer>`` span.
            res5: ``(E, 8C, h, w)`` Swin res5 of each expression's frame.
        """
        return torch.stack([self.vmtf(states, res5[e]) for e, states in enumerate(refer)])

    def decode_masks(
        self, seg_states: torch.Tensor, seg_embeddings: torch.Tensor, pixel: PixelDecoderOutput
    ) -> MaskDecoderOutput:
        """Mask and SEG logits from the seg-query states ``(E, Q, hidden)`` and SEG embeddings ``(E, 1, width)``."""
        return self.decoder(
            self.seg_query_projector(seg_states), seg_embeddings, pixel.mask_features, list(pixel.multi_scale_features)
        )
