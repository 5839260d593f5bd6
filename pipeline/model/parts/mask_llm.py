"""What HyperSeg and InstructSeg share: SigLIP, the projector, Phi-2, the Swin-B Mask2Former, the seg queries.

Both releases store these under the same checkpoint keys (model.md §1.10, §2.3), so the shared modules and
their key routes live here once; ``hyperseg.py`` and ``instructseg.py`` add each model's own modules.
"""

from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..config import MaskLlmConfig, config_from_checkpoint
from ..registry import model_for
from .checkpoint import (
    CheckpointError,
    Route,
    check_state,
    map_weights,
    parameters_on_meta,
    read_weights,
    unmap_weights,
)
from .llm import build_llm, convert_llm, released_llm
from .mask_decoder import MaskDecoder, convert_decoder, released_decoder
from .pixel_decoder import PixelDecoder, convert_pixel_decoder, released_pixel_decoder
from .swin import MaskBackbone, convert_swin, released_swin
from .vision import Projector, VisionTower, convert_vision, released_vision


class MaskLlm(nn.Module):
    """The shared weights, under names that mirror the released checkpoints' parts."""

    # Released top-level key prefixes inference never runs (the LM head: segmentation decodes no text).
    dropped_prefixes: tuple[str, ...] = ("lm_head.",)

    def __init__(self, config: MaskLlmConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision, attn_implementation)
        self.projector = Projector(config.vision)
        self.llm = build_llm(config.llm, attn_implementation)
        self.swin = MaskBackbone(config.swin, attn_implementation)
        self.pixel_decoder = PixelDecoder(config.pixel_decoder, config.swin.feature_channels)
        self.decoder = MaskDecoder(config.decoder)
        queries, hidden, width = config.decoder.num_queries, config.llm.hidden_size, config.decoder.hidden_dim
        self.seg_query = nn.Parameter(torch.empty(queries, hidden))  # fills the 100 <seg> slots
        self.seg_query_projector = nn.Linear(hidden, width)
        # Real runs load released weights. Random ones must not be zero: with transformers' zero biases a zero
        # query attends uniformly at the first layer, and attention-ranked pruning (FastV) would see no signal.
        nn.init.normal_(self.seg_query, std=0.02)

    @property
    def grid(self) -> tuple[int, int]:
        """The SigLIP token grid, (27, 27) for 384 / 14."""
        return self.config.vision.grid

    def routes(self) -> list[Route]:
        """Where each released key prefix goes in this module, and back (checkpoint key names: model.md §2.3)."""
        return [
            Route(
                "model.vision_tower.vision_model.",
                "vision.",
                partial(convert_vision, settings=self.config.vision),
                release=released_vision,
            ),
            Route("model.mm_projector.", "projector."),
            Route("model.vision_tower_mask.", "swin.", convert_swin, release=released_swin),
            Route("model.", "llm.", convert_llm, release=released_llm),
            Route("pixel_decoder.", "pixel_decoder.", convert_pixel_decoder, release=released_pixel_decoder),
            Route(
                "predictor.",
                "decoder.",
                partial(convert_decoder, seg_proj=self.config.decoder.seg_proj),
                release=released_decoder,
            ),
            Route("seg_query", "seg_query"),
            Route("seg_query_projector.", "seg_query_projector."),
        ]

    def load_released(self, weights: dict[str, torch.Tensor]) -> None:
        """Load tensors named as in the released checkpoint; one clear error lists every mismatch."""
        state, unclaimed = map_weights(weights, self.routes(), self.dropped_prefixes)
        check_state(self, state, unclaimed)
        self.load_state_dict(state, strict=True, assign=next(self.parameters()).is_meta)

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the released checkpoint's key names and layouts (congvvc/HyperSeg@5cfcf52).

        ``self.routes()`` walked backwards through each part's inverse converter (fused Swin ``attn.qkv`` and
        decoder ``in_proj_*`` re-packed). Every state-dict key must be claimed by exactly one route, and the result
        must map back onto exactly this model's keys and shapes; either failure raises ``CheckpointError``.

        Released keys that inference never reads are not written, since this model does not hold them:
        ``lm_head``, SigLIP's layers after the selected one with ``post_layernorm`` and the MAP head, the unused
        decoder heads (``query_feat``, ``SEG_query_embed``, box, IoU, re-id, class and region heads), Swin's
        ``relative_position_index`` buffers, HyperSeg's ``region_projector`` / ``class_name_projector``. So the
        result loads with ``load_released`` / ``from_pretrained``, not with the released code's strict loader.
        The tensors share memory with the parameters except the re-fused ones.
        """
        # torch.compile wraps a submodule as ``<name>._orig_mod``; the released names know nothing of it.
        state = {key.replace("._orig_mod.", "."): value for key, value in self.state_dict().items()}
        released = unmap_weights(state, self.routes())
        shapes = {key: value.shape for key, value in state.items()}
        back, unclaimed = map_weights(released, self.routes(), self.dropped_prefixes)
        if unclaimed or {key: value.shape for key, value in back.items()} != shapes:
            wrong = sorted(set(back).symmetric_difference(shapes)) + unclaimed
            wrong += [k for k in sorted(set(back) & set(shapes)) if back[k].shape != shapes[k]]
            raise CheckpointError(f"the released names do not load back onto this model: {wrong[:20]}")
        return released

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        **config_overrides,
    ) -> "MaskLlm":
        """Build from a checkpoint directory in the released layout (safetensors only) and load it.

        Called on ``MaskLlm`` it builds whichever model ``config.json``'s ``architectures`` names; on a
        subclass, a checkpoint of the other family is refused.

        Args:
            directory: local folder with ``config.json`` and ``model.safetensors`` or the sharded files and
                ``model.safetensors.index.json``; ``mask_config.json`` and ``siglip_preprocessor_config.json``
                override the mask-branch and preprocessing defaults (the released models').
            dtype: parameter dtype (float32 on CPU; bfloat16 or float16 on CUDA).
            device: where the model runs.
            config_overrides: whole config parts to replace (see ``config_from_checkpoint``).
        """
        config = config_from_checkpoint(directory, **config_overrides)
        model_class = model_for(config)
        if not issubclass(model_class, cls):
            raise ValueError(f"{directory} holds a {model_class.__name__} checkpoint, not a {cls.__name__} one")
        weights = read_weights(directory, dtype=dtype)
        with parameters_on_meta():  # no 3 B random weights to initialise only to overwrite them
            model = model_class(config, attn_implementation)
        model.load_released(weights)
        return model.to(device=device, dtype=dtype).eval()

    def encode_vision(self, pixels: torch.Tensor) -> torch.Tensor:
        """SigLIP features for the LLM, ``(B, 3, S, S) -> (B, N, D)`` (before selection and projection)."""
        return self.vision(pixels.to(self.seg_query.dtype))

    def encode_swin(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Swin res2-res5 of the padded canvas ``(B, 3, C, C)``; ``pixel_decoder`` takes them from there."""
        return self.swin(pixels.to(self.seg_query.dtype))
