"""The masked-attention mask decoder with HyperSeg's SEG head.

HyperSeg's predictor (congvvc/HyperSeg@5cfcf52:hyperseg/model/mask_decoder/Mask2Former_Simplify/modeling/
transformer_decoder/mask2former_transformer_decoder.py, ``forward_woconcat``) is Mask2Former's masked-attention
decoder with two changes: the initial query *features* are the projected LLM seg-query states instead of the learned
``query_feat``, and every prediction head also scores each query against the projected ``<refer>`` state:
``SEG_class = einsum('bld,bcd->blc', SEG_proj(LN(q)), SEG_embedding)`` (model.md §1.7).

transformers' ``Mask2FormerMaskedAttentionDecoder`` computes the same layers and mask heads (model-hf.md §6), but its
wrapper ``Mask2FormerTransformerModule`` always feeds its own learned query features. So this module repeats the
wrapper's short setup (sine position embeddings, input projection + level embedding, query position embedding) and
calls the decoder directly.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerSinePositionEmbedding,
)

# Mask2Former always attends to three pixel-decoder scales, low -> high resolution, in turn.
NUM_FEATURE_LEVELS = 3

# Released ``predictor.*`` keys that inference never reads, and why.
UNUSED_DECODER_PREFIXES = (
    # Learned initial query features: HyperSeg's eval path always passes the LLM seg queries instead.
    "query_feat.",
    # Query positions (1 SEG + 100 queries) of the ``forward_concat`` path; the released config runs ``wo_concat``.
    "SEG_query_embed.",
    # Box regression and box-IoU heads: their outputs (``pred_boxes``, ``pred_boxious``) are None in ``eval_seg``.
    "box_embed.",
    "iou_head.",
    # Re-identification embedding for video-instance training; not computed at inference.
    "reid_embed_head.",
    # Class-name and region logits: only for ``<cls>`` / ``<region>`` prompts, never for referring segmentation.
    "CLASS_proj.",
    "REGION_proj.",
)


@dataclass(frozen=True)
class DecoderSettings:
    """Mask decoder sizes; defaults are HyperSeg-3B's (``maskformer2_swin_base_384_bs16_50ep.yaml``)."""

    hidden_dim: int = 256
    num_queries: int = 100
    num_heads: int = 8
    dim_feedforward: int = 2048
    # YAML ``DEC_LAYERS``: the decoder runs ``dec_layers - 1`` layers (one prediction before the first layer).
    dec_layers: int = 10
    pre_norm: bool = False
    mask_dim: int = 256
    # Channels of the pixel decoder's multi-scale maps (``SEM_SEG_HEAD.CONVS_DIM``).
    in_channels: int = 256
    enforce_input_projection: bool = False
    # ``MASK_FORMER.SEG_PROJ``: pass the normed queries through ``SEG_proj`` before the SEG dot product.
    seg_proj: bool = True

    @property
    def num_layers(self) -> int:
        return self.dec_layers - 1

    @classmethod
    def from_mask_config(cls, mask_config: Mapping) -> "DecoderSettings":
        """Reads a resolved Mask2Former config dict (as in the golden ``mask_config.json``)."""
        former = mask_config["MODEL"]["MASK_FORMER"]
        head = mask_config["MODEL"]["SEM_SEG_HEAD"]
        return cls(
            hidden_dim=former["HIDDEN_DIM"],
            num_queries=former["NUM_OBJECT_QUERIES"],
            num_heads=former["NHEADS"],
            dim_feedforward=former["DIM_FEEDFORWARD"],
            dec_layers=former["DEC_LAYERS"],
            pre_norm=former["PRE_NORM"],
            mask_dim=head["MASK_DIM"],
            in_channels=head["CONVS_DIM"],
            enforce_input_projection=former.get("ENFORCE_INPUT_PROJ", False),
            seg_proj=former.get("SEG_PROJ", True),
        )

    def to_hf_config(self) -> Mask2FormerConfig:
        # HF's ``decoder_layers`` has the YAML meaning (it subtracts 1 itself).
        return Mask2FormerConfig(
            hidden_dim=self.hidden_dim,
            num_queries=self.num_queries,
            num_attention_heads=self.num_heads,
            dim_feedforward=self.dim_feedforward,
            decoder_layers=self.dec_layers,
            pre_norm=self.pre_norm,
            mask_feature_size=self.mask_dim,
            feature_size=self.in_channels,
            enforce_input_projection=self.enforce_input_projection,
            dropout=0.0,
            activation_function="relu",
        )


@dataclass
class MaskPrediction:
    """One prediction head's output.

    Attributes:
        pred_masks: mask logits at the mask-feature resolution, (batch, queries, h, w).
        pred_seg_logits: SEG logits, one per query, (batch, queries, 1).
    """

    pred_masks: torch.Tensor
    pred_seg_logits: torch.Tensor


@dataclass
class MaskDecoderOutput:
    """Decoder output in the released layout (``predictor`` returns the same fields as a dict).

    Attributes:
        pred_masks: last prediction's mask logits, (batch, queries, h, w).
        pred_seg_logits: last prediction's SEG logits, (batch, queries, 1).
        aux_outputs: the earlier predictions in order: before the first layer, then after each layer but the last.
    """

    pred_masks: torch.Tensor
    pred_seg_logits: torch.Tensor
    aux_outputs: list[MaskPrediction]


class SegProjection(nn.Module):
    """``SEG_proj``: the released 2-layer MLP (Linear, ReLU, Linear) on the normed queries, width ``hidden_dim``."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim), nn.Linear(hidden_dim, hidden_dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(..., hidden) -> (..., hidden)``."""
        return self.layers[1](nn.functional.relu(self.layers[0](hidden_states)))


class MaskDecoder(nn.Module):
    """HF masked-attention decoder driven by the LLM seg queries, plus the SEG head."""

    def __init__(self, settings: DecoderSettings):
        super().__init__()
        if settings.num_layers < 1:
            raise ValueError(
                f"dec_layers must be at least 2 (it counts the initial prediction), got {settings.dec_layers}"
            )
        if settings.hidden_dim % settings.num_heads:
            raise ValueError(f"hidden_dim {settings.hidden_dim} is not divisible by num_heads {settings.num_heads}")
        self.settings = settings
        hidden = settings.hidden_dim
        # Released ``pe_layer``: PositionEmbeddingSine(hidden // 2, normalize=True); it has no weights.
        self.position_embedder = Mask2FormerSinePositionEmbedding(num_position_features=hidden // 2, normalize=True)
        project = settings.in_channels != hidden or settings.enforce_input_projection
        self.input_proj = nn.ModuleList(
            nn.Conv2d(settings.in_channels, hidden, kernel_size=1) if project else nn.Identity()
            for _ in range(NUM_FEATURE_LEVELS)
        )
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, hidden)
        # Learned query *positions*; the query *features* come from the LLM.
        self.query_embed = nn.Embedding(settings.num_queries, hidden)
        self.decoder = Mask2FormerMaskedAttentionDecoder(settings.to_hf_config())
        self.seg_proj = SegProjection(hidden) if settings.seg_proj else nn.Identity()

    def forward(
        self,
        queries: torch.Tensor,
        seg_embedding: torch.Tensor,
        mask_features: torch.Tensor,
        multi_scale_features: Sequence[torch.Tensor],
    ) -> MaskDecoderOutput:
        """Runs all decoder layers and prediction heads.

        Args:
            queries: projected LLM seg-query states (``seg_query_projector`` output), (batch, queries, hidden).
            seg_embedding: projected pooled ``<refer>`` state (``SEG_token_projector`` output), (batch, 1, hidden).
            mask_features: per-pixel embeddings of the pixel decoder, (batch, mask_dim, h, w).
            multi_scale_features: the pixel decoder's 3 maps, low -> high resolution, each
                (batch, in_channels, h_i, w_i).

        Returns:
            The last prediction and the auxiliary ones, as the released predictor returns them.
        """
        self._check_inputs(queries, seg_embedding, mask_features, multi_scale_features)
        batch = queries.shape[0]
        positions, sources, sizes = [], [], []
        for level, features in enumerate(multi_scale_features):
            sizes.append(features.shape[-2:])
            # (batch, hidden, h_i, w_i) -> (h_i * w_i, batch, hidden), the layout of the released code and HF.
            pos = self.position_embedder(features.shape, features.device, features.dtype)
            positions.append(pos.flatten(2).permute(2, 0, 1))
            src = self.input_proj[level](features).flatten(2) + self.level_embed.weight[level][None, :, None]
            sources.append(src.permute(2, 0, 1))
        # (queries, batch, hidden)
        query_positions = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        decoded = self.decoder(
            inputs_embeds=queries.transpose(0, 1),
            multi_stage_positional_embeddings=positions,
            pixel_embeddings=mask_features,
            encoder_hidden_states=sources,
            query_position_embeddings=query_positions,
            feature_size_list=sizes,
            output_hidden_states=False,
            output_attentions=False,
            return_dict=True,
        )
        predictions = []
        # HF's intermediate states are already ``decoder_norm``-ed, as in the released ``forward_prediction_heads``.
        for normed, masks in zip(decoded.intermediate_hidden_states, decoded.masks_queries_logits, strict=True):
            seg_logits = torch.einsum("bld,bcd->blc", self.seg_proj(normed.transpose(0, 1)), seg_embedding)
            predictions.append(MaskPrediction(pred_masks=masks, pred_seg_logits=seg_logits))
        last = predictions[-1]
        return MaskDecoderOutput(
            pred_masks=last.pred_masks, pred_seg_logits=last.pred_seg_logits, aux_outputs=predictions[:-1]
        )

    def _check_inputs(self, queries, seg_embedding, mask_features, multi_scale_features) -> None:
        settings = self.settings
        if queries.ndim != 3 or queries.shape[1:] != (settings.num_queries, settings.hidden_dim):
            raise ValueError(
                f"queries must be (batch, {settings.num_queries}, {settings.hidden_dim}), got {tuple(queries.shape)}"
            )
        batch = queries.shape[0]
        if seg_embedding.ndim != 3 or seg_embedding.shape[0] != batch or seg_embedding.shape[2] != settings.hidden_dim:
            raise ValueError(
                f"seg_embedding must be ({batch}, 1, {settings.hidden_dim}), got {tuple(seg_embedding.shape)}"
            )
        if mask_features.ndim != 4 or mask_features.shape[:2] != (batch, settings.mask_dim):
            raise ValueError(
                f"mask_features must be ({batch}, {settings.mask_dim}, h, w), got {tuple(mask_features.shape)}"
            )
        if len(multi_scale_features) != NUM_FEATURE_LEVELS:
            raise ValueError(
                f"expected {NUM_FEATURE_LEVELS} multi-scale feature maps, got {len(multi_scale_features)}"
            )
        for level, features in enumerate(multi_scale_features):
            if features.ndim != 4 or features.shape[:2] != (batch, settings.in_channels):
                raise ValueError(
                    f"multi_scale_features[{level}] must be ({batch}, {settings.in_channels}, h, w), "
                    f"got {tuple(features.shape)}"
                )


# Per-layer renames, released -> HF ``Mask2FormerMaskedAttentionDecoderLayer`` (model-hf.md §6).
_LAYER_RENAMES = {
    "transformer_cross_attention_layers.{i}.multihead_attn.": "decoder.layers.{i}.cross_attn.",
    "transformer_cross_attention_layers.{i}.norm.": "decoder.layers.{i}.cross_attn_layer_norm.",
    "transformer_self_attention_layers.{i}.self_attn.out_proj.": "decoder.layers.{i}.self_attn.out_proj.",
    "transformer_self_attention_layers.{i}.norm.": "decoder.layers.{i}.self_attn_layer_norm.",
    "transformer_ffn_layers.{i}.linear1.": "decoder.layers.{i}.fc1.",
    "transformer_ffn_layers.{i}.linear2.": "decoder.layers.{i}.fc2.",
    "transformer_ffn_layers.{i}.norm.": "decoder.layers.{i}.final_layer_norm.",
}
_PREFIX_RENAMES = {
    "decoder_norm.": "decoder.layernorm.",
    "SEG_proj.": "seg_proj.",
}
_QKV = ("q_proj", "k_proj", "v_proj")  # the order of ``nn.MultiheadAttention``'s packed rows


def convert_decoder(weights: dict[str, torch.Tensor], seg_proj: bool = True) -> dict[str, torch.Tensor]:
    """Maps released ``predictor.*`` tensors (prefix stripped) to ``MaskDecoder.state_dict()`` names.

    Only renames and ``chunk`` views, so it works on meta tensors. Unused heads are dropped (see
    ``UNUSED_DECODER_PREFIXES``); unknown keys pass through unchanged so that strict loading reports them.

    Args:
        weights: released tensors, e.g. ``transformer_ffn_layers.0.linear1.weight``.
        seg_proj: False for a ``SEG_PROJ False`` config, whose module has no ``SEG_proj``: its keys are then dropped.
    """
    converted = {}
    for key, tensor in weights.items():
        if key.startswith(UNUSED_DECODER_PREFIXES) or (not seg_proj and key.startswith("SEG_proj.")):
            continue
        parts = key.split(".")
        if key.startswith("transformer_self_attention_layers.") and parts[-1] in ("in_proj_weight", "in_proj_bias"):
            # nn.MultiheadAttention packs q, k, v along dim 0; HF's self-attention has three Linears.
            suffix = "weight" if parts[-1] == "in_proj_weight" else "bias"
            for name, chunk in zip(_QKV, tensor.chunk(3, dim=0), strict=True):
                converted[f"decoder.layers.{parts[1]}.self_attn.{name}.{suffix}"] = chunk
            continue
        converted[_rename(key, parts)] = tensor
    return converted


def _rename(key: str, parts: list[str]) -> str:
    if len(parts) > 2 and parts[1].isdigit():
        for old, new in _LAYER_RENAMES.items():
            old = old.format(i=parts[1])
            if key.startswith(old):
                return new.format(i=parts[1]) + key[len(old) :]
    if key.startswith("mask_embed.layers.") and len(parts) == 4:
        # Released MLP ``layers.j`` -> HF ``Mask2FormerPredictionBlock`` j, whose Linear is its submodule 0.
        return f"decoder.mask_predictor.mask_embedder.{parts[2]}.0.{parts[3]}"
    for old, new in _PREFIX_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    # query_embed, level_embed and input_proj.{i} (only a conv when projecting) keep their names.
    return key


def released_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``MaskDecoder.state_dict()`` (``decoder.`` stripped) -> released ``predictor.*`` names and layouts.

    The inverse of ``convert_decoder``: each self-attention's q, k and v are packed back into ``in_proj_weight``
    / ``in_proj_bias`` with ``torch.cat`` in the order ``convert_decoder`` splits them. The heads inference never
    runs (``UNUSED_DECODER_PREFIXES``) are not in the module, so they are not written.
    """
    released: dict[str, torch.Tensor] = {}
    packed: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if key.startswith("decoder.layers.") and parts[3] == "self_attn" and parts[4] in _QKV:
            name = f"transformer_self_attention_layers.{parts[2]}.self_attn.in_proj_{parts[5]}"
            packed.setdefault(name, {})[parts[4]] = tensor
            continue
        released[_released_name(key, parts)] = tensor
    for name, chunks in packed.items():
        if set(chunks) != set(_QKV):
            raise ValueError(f"{name}: q, k and v are needed to pack it, got {sorted(chunks)}")
        released[name] = torch.cat([chunks[p] for p in _QKV], dim=0)
    return released


def _released_name(key: str, parts: list[str]) -> str:
    """Inverse of ``_rename``."""
    if key.startswith("decoder.layers.") and len(parts) > 3:
        for old, new in _LAYER_RENAMES.items():
            new = new.format(i=parts[2])
            if key.startswith(new):
                return old.format(i=parts[2]) + key[len(new) :]
    if key.startswith("decoder.mask_predictor.mask_embedder.") and len(parts) == 6:
        return f"mask_embed.layers.{parts[3]}.{parts[5]}"
    for old, new in _PREFIX_RENAMES.items():
        if key.startswith(new):
            return old + key[len(new) :]
    return key
