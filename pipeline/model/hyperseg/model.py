"""HyperSeg (congvvc/HyperSeg@5cfcf52) composed from transformers 5 classes and our small parts.

SigLIP -> (token selection) -> projector -> Phi-2 prefill over the released template; Swin-B -> MSDeformAttn
pixel decoder -> masked-attention decoder fed with the LLM's 100 seg-query states; the FVP fills the
128 ``<temporal>`` slots from Swin res3-res5 (model.md §1). The shared parts are ``mask_llm.MaskLlm``'s; this
module adds the FVP and the SEG projection. ``predictor.py`` turns frames and expressions into masks.
"""

import torch
from torch import nn

from ..parts.checkpoint import Route
from ..parts.mask_decoder import MaskDecoderOutput
from ..parts.mask_llm import MaskLlm
from ..parts.pixel_decoder import PixelDecoderOutput
from .config import HyperSegConfig
from .fvp import FineGrainedPerceiver, convert_fvp, released_fvp

# Released top-level modules inference never runs: the LM head (segmentation decodes no text) and the
# region / class-name prompt projectors (visual prompts and open-vocabulary classes are not IVS tasks).
DROPPED_PREFIXES = ("lm_head.", "region_projector.", "class_name_projector.")
FVP_PREFIXES = (
    "temporal_query",
    "local_project.",
    "level_embed.",
    "mgvp_layers.",
    "expanded_seg_query_project.",
    "temporal_query_project.",
)


class HyperSeg(MaskLlm):
    """The HyperSeg weights: the shared parts, the FVP and the SEG projection."""

    config_class = HyperSegConfig
    dropped_prefixes = DROPPED_PREFIXES

    def __init__(self, config: HyperSegConfig, attn_implementation: str = "sdpa"):
        super().__init__(config, attn_implementation)
        self.fvp = FineGrainedPerceiver(config.fvp)
        self.SEG_token_projector = nn.Linear(config.llm.hidden_size, config.decoder.hidden_dim)  # noqa: N815

    def routes(self) -> list[Route]:
        return [
            *super().routes(),
            *(Route(p, "fvp." + p, convert_fvp, release=released_fvp) for p in FVP_PREFIXES),
            Route("SEG_token_projector.", "SEG_token_projector."),
        ]

    def decode_masks(
        self, seg_states: torch.Tensor, refer_states: torch.Tensor, pixel: PixelDecoderOutput
    ) -> MaskDecoderOutput:
        """Mask and SEG logits from the LLM's seg-query states ``(E, Q, hidden)`` and refer states ``(E, 1, hidden)``.

        ``pixel`` holds one entry per expression (repeat a frame's outputs for each of its expressions).
        """
        return self.decoder(
            self.seg_query_projector(seg_states),
            self.SEG_token_projector(refer_states),
            pixel.mask_features,
            list(pixel.multi_scale_features),
        )
