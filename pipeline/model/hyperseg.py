"""HyperSeg (congvvc/HyperSeg@5cfcf52) composed from transformers 5 classes and our small parts.

SigLIP -> (token selection) -> projector -> Phi-2 prefill over the released template; Swin-B -> MSDeformAttn
pixel decoder -> masked-attention decoder fed with the LLM's 100 seg-query states; the FVP fills the
128 ``<temporal>`` slots from Swin res3-res5 (model.md §1). This module holds the weights and the stages;
``predictor.py`` turns frames and expressions into masks.
"""

from functools import partial
from pathlib import Path

import torch
from torch import nn

from .checkpoint import Route, check_state, map_weights, parameters_on_meta, read_weights
from .config import HyperSegConfig, config_from_checkpoint
from .fvp import FineGrainedPerceiver, convert_fvp
from .llm import build_llm, convert_llm
from .mask_decoder import MaskDecoder, MaskDecoderOutput, convert_decoder
from .pixel_decoder import PixelDecoder, PixelDecoderOutput, convert_pixel_decoder
from .swin import MaskBackbone, convert_swin
from .vision import Projector, VisionTower, convert_vision

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


class HyperSeg(nn.Module):
    """The HyperSeg weights, under names that mirror the released checkpoint's parts."""

    def __init__(self, config: HyperSegConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision, attn_implementation)
        self.projector = Projector(config.vision)
        self.llm = build_llm(config.llm, attn_implementation)
        self.swin = MaskBackbone(config.swin, attn_implementation)
        self.pixel_decoder = PixelDecoder(config.pixel_decoder, config.swin.feature_channels)
        self.decoder = MaskDecoder(config.decoder)
        self.fvp = FineGrainedPerceiver(config.fvp)
        queries, hidden, width = config.decoder.num_queries, config.llm.hidden_size, config.decoder.hidden_dim
        self.seg_query = nn.Parameter(torch.zeros(queries, hidden))  # fills the 100 <seg> slots
        self.seg_query_projector = nn.Linear(hidden, width)
        self.SEG_token_projector = nn.Linear(hidden, width)  # noqa: N815 (the released name)

    @property
    def grid(self) -> tuple[int, int]:
        """The SigLIP token grid, (27, 27) for 384 / 14."""
        return self.config.vision.grid

    def routes(self) -> list[Route]:
        """Where each released key prefix goes in this module (checkpoint key names: model.md §2.3)."""
        return [
            Route("model.vision_tower.vision_model.", "vision.", partial(convert_vision, settings=self.config.vision)),
            Route("model.mm_projector.", "projector."),
            Route("model.vision_tower_mask.", "swin.", convert_swin),
            Route("model.", "llm.", convert_llm),
            Route("pixel_decoder.", "pixel_decoder.", convert_pixel_decoder),
            Route("predictor.", "decoder.", partial(convert_decoder, seg_proj=self.config.decoder.seg_proj)),
            *(Route(p, "fvp." + p, convert_fvp) for p in FVP_PREFIXES),
            Route("seg_query", "seg_query"),
            Route("seg_query_projector.", "seg_query_projector."),
            Route("SEG_token_projector.", "SEG_token_projector."),
        ]

    def load_released(self, weights: dict[str, torch.Tensor]) -> None:
        """Load tensors named as in the released checkpoint; one clear error lists every mismatch."""
        state, unclaimed = map_weights(weights, self.routes(), DROPPED_PREFIXES)
        check_state(self, state, unclaimed)
        self.load_state_dict(state, strict=True, assign=next(self.parameters()).is_meta)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        **config_overrides,
    ) -> "HyperSeg":
        """Build from a checkpoint directory in the released layout (safetensors only) and load it.

        Args:
            directory: local folder with ``config.json`` and ``model.safetensors`` or the sharded files and
                ``model.safetensors.index.json``; ``mask_config.json`` and ``siglip_preprocessor_config.json``
                override the mask-branch and preprocessing defaults (HyperSeg-3B's).
            dtype: parameter dtype (float32 on CPU; bfloat16 or float16 on CUDA).
            device: where the model runs.
            config_overrides: whole config parts to replace (see ``config_from_checkpoint``).
        """
        config = config_from_checkpoint(directory, **config_overrides)
        weights = read_weights(directory, dtype=dtype)
        with parameters_on_meta():  # no 3 B random weights to initialise only to overwrite them
            model = cls(config, attn_implementation)
        model.load_released(weights)
        return model.to(device=device, dtype=dtype).eval()

    # Stages -------------------------------------------------------------------------------------

    def encode_vision(self, pixels: torch.Tensor) -> torch.Tensor:
        """SigLIP features for the LLM, ``(B, 3, S, S) -> (B, N, D)`` (before selection and projection)."""
        return self.vision(pixels.to(self.seg_query.dtype))

    def encode_swin(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Swin res2-res5 of the padded canvas ``(B, 3, C, C)``; ``pixel_decoder`` takes them from there."""
        return self.swin(pixels.to(self.seg_query.dtype))

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
