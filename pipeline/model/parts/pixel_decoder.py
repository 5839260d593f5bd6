"""HyperSeg's MSDeformAttn pixel decoder, built on transformers' `Mask2FormerPixelDecoder`.

The released decoder (congvvc/HyperSeg@5cfcf52:hyperseg/model/mask_decoder/Mask2Former_Simplify/modeling/
pixel_decoder/msdeformattn.py, `MSDeformAttnPixelDecoder.forward_features`) is Mask2Former's: res3..res5 are
projected to `convs_dim`, refined by a deformable-attention encoder, and res2 joins through one FPN step. It
differs from transformers' class in two places (model-hf.md §5), both in the FPN step:

- the lateral 1x1 conv (`adapter_1.0`) and the output 3x3 conv (`layer_1.0`) have biases;
- a ReLU follows the lateral GroupNorm.

`PixelDecoder` is the transformers class with exactly these two modules changed; everything else, including the
pure-PyTorch multi-scale deformable attention (bitwise equal to the released `ms_deform_attn_core_pytorch`), is
used as-is.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

from .swin import FEATURE_NAMES

# transformers hard-codes these three (encoder layer `n_levels=3, n_points=4`, `nn.GroupNorm(32, ...)`), so the
# settings may only repeat them; HyperSeg uses the same values.
_HF_NUM_LEVELS = 3
_HF_NUM_POINTS = 4
_HF_NORM_GROUPS = 32

# Released `pixel_decoder.*` keys that inference never reads: none, every released tensor is used.
DROPPED_PIXEL_DECODER_KEYS: tuple[str, ...] = ()

# Released name fragment -> transformers name fragment, applied in order (model-hf.md §5).
_PIXEL_DECODER_RENAMES: tuple[tuple[str, str], ...] = (
    ("input_proj.", "input_projections."),
    ("transformer.level_embed", "level_embed"),
    ("transformer.encoder.", "encoder."),
    (".norm1.", ".self_attn_layer_norm."),
    (".linear1.", ".fc1."),
    (".linear2.", ".fc2."),
    (".norm2.", ".final_layer_norm."),
    ("mask_features.", "mask_projection."),
)


@dataclass(frozen=True)
class PixelDecoderSettings:
    """Sizes of the pixel decoder. Defaults are HyperSeg-3B's (mask config `MODEL.SEM_SEG_HEAD` / `MASK_FORMER`).

    Attributes:
        convs_dim: width of the projected levels and of the encoder (`CONVS_DIM`).
        mask_dim: channels of `mask_features` (`MASK_DIM`).
        encoder_layers: deformable-attention encoder layers (`TRANSFORMER_ENC_LAYERS`).
        encoder_heads: encoder attention heads; the release uses `MASK_FORMER.NHEADS`.
        n_points: sampling points per head and level.
        encoder_feedforward_dim: encoder FFN width; Mask2Former hard-codes 1024 (`MSDeformAttnPixelDecoder.
            from_config`, facebookresearch/Mask2Former), independent of the decoder's `DIM_FEEDFORWARD`.
        common_stride: stride of `mask_features` (`COMMON_STRIDE`).
        norm_groups: GroupNorm groups of every conv ("GN").
        dropout: encoder dropout (`MASK_FORMER.DROPOUT`); inactive in eval mode anyway.
        feature_strides: strides of res2..res5.
    """

    convs_dim: int = 256
    mask_dim: int = 256
    encoder_layers: int = 6
    encoder_heads: int = 8
    n_points: int = _HF_NUM_POINTS
    encoder_feedforward_dim: int = 1024
    common_stride: int = 4
    norm_groups: int = _HF_NORM_GROUPS
    dropout: float = 0.0
    feature_strides: tuple[int, ...] = (4, 8, 16, 32)

    def __post_init__(self) -> None:
        if self.n_points != _HF_NUM_POINTS:
            raise ValueError(f"n_points must be {_HF_NUM_POINTS} (fixed in transformers), got {self.n_points}")
        if self.norm_groups != _HF_NORM_GROUPS:
            raise ValueError(f"norm_groups must be {_HF_NORM_GROUPS} (fixed in transformers), got {self.norm_groups}")
        if self.convs_dim % self.norm_groups != 0:
            raise ValueError(f"convs_dim {self.convs_dim} is not divisible into {self.norm_groups} GroupNorm groups")
        if self.convs_dim % self.encoder_heads != 0:
            raise ValueError(f"convs_dim {self.convs_dim} is not divisible by {self.encoder_heads} heads")
        if len(self.feature_strides) != len(FEATURE_NAMES):
            raise ValueError(f"feature_strides needs {len(FEATURE_NAMES)} entries, got {self.feature_strides}")

    @classmethod
    def from_mask_config(cls, mask_config: Mapping) -> "PixelDecoderSettings":
        """Reads a resolved Mask2Former config (e.g. `checkpoint/mask_config.json`)."""
        head = mask_config["MODEL"]["SEM_SEG_HEAD"]
        former = mask_config["MODEL"]["MASK_FORMER"]
        encoder_in = tuple(head["DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"])
        if encoder_in != FEATURE_NAMES[1:]:
            raise ValueError(f"the encoder must read {FEATURE_NAMES[1:]}, the config has {encoder_in}")
        return cls(
            convs_dim=int(head["CONVS_DIM"]),
            mask_dim=int(head["MASK_DIM"]),
            encoder_layers=int(head["TRANSFORMER_ENC_LAYERS"]),
            encoder_heads=int(former["NHEADS"]),
            common_stride=int(head["COMMON_STRIDE"]),
            dropout=float(former["DROPOUT"]),
        )

    def to_hf_config(self) -> Mask2FormerConfig:
        """The `Mask2FormerConfig` fields the pixel decoder reads (the decoder fields keep their defaults)."""
        return Mask2FormerConfig(
            feature_size=self.convs_dim,
            mask_feature_size=self.mask_dim,
            encoder_layers=self.encoder_layers,
            num_attention_heads=self.encoder_heads,
            encoder_feedforward_dim=self.encoder_feedforward_dim,
            common_stride=self.common_stride,
            dropout=self.dropout,
            feature_strides=list(self.feature_strides),
        )


@dataclass(frozen=True)
class PixelDecoderOutput:
    """Output of `PixelDecoder`.

    Attributes:
        mask_features: (batch, mask_dim, H/4, W/4), the per-pixel embeddings the mask head dots with.
        multi_scale_features: 3 maps (batch, convs_dim, h_i, w_i) from low to high resolution (strides 32, 16,
            8), the masked-attention decoder's memories. Index 0 is also the release's
            `transformer_encoder_features`.
    """

    mask_features: torch.Tensor
    multi_scale_features: tuple[torch.Tensor, ...]


class PixelDecoder(Mask2FormerPixelDecoder):
    """`Mask2FormerPixelDecoder` with HyperSeg's FPN step (biased lateral/output convs, ReLU after the lateral GN).

    Its `state_dict` keys are transformers' (`input_projections.*`, `encoder.layers.*`, `mask_projection.*`,
    `adapter_1.*`, `layer_1.*`, `level_embed`); `convert_pixel_decoder` maps the released names to them.

    Args:
        settings: decoder sizes.
        feature_channels: channels of res2..res5, from the Swin settings: (C, 2C, 4C, 8C).
    """

    def __init__(self, settings: PixelDecoderSettings, feature_channels: Sequence[int]) -> None:
        if len(feature_channels) != len(FEATURE_NAMES):
            raise ValueError(f"feature_channels needs {len(FEATURE_NAMES)} entries, got {feature_channels}")
        super().__init__(settings.to_hf_config(), feature_channels=list(feature_channels))
        if self.num_feature_levels != _HF_NUM_LEVELS:
            raise ValueError(f"expected {_HF_NUM_LEVELS} encoder levels, transformers built {self.num_feature_levels}")
        self.settings = settings
        dim = settings.convs_dim
        for idx, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            # Modified in place: `lateral_convolutions` / `output_convolutions` hold these same Sequentials.
            lateral = getattr(self, f"adapter_{idx + 1}")
            output = getattr(self, f"layer_{idx + 1}")
            # (a) The release builds both convs with `bias=True`; at 8 channels per GroupNorm group the bias
            # does not cancel, so dropping it changes the output.
            lateral[0] = nn.Conv2d(in_channels, dim, kernel_size=1, bias=True)
            output[0] = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=True)
            # (b) The release applies a ReLU after the lateral GroupNorm (neither transformers nor detectron2 do).
            lateral.append(nn.ReLU())
        # transformers allocates `level_embed` with `torch.Tensor(...)` (uninitialised memory); give a module
        # built without a checkpoint finite values (normal, as Mask2Former's own init).
        nn.init.normal_(self.level_embed)

    def forward(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput:  # type: ignore[override]
        """Decodes the Swin pyramid.

        Args:
            features: {"res2": (batch, C, H/4, W/4), ..., "res5": (batch, 8C, H/32, W/32)}, from `MaskBackbone`.

        Returns:
            `PixelDecoderOutput` with `mask_features` (batch, mask_dim, H/4, W/4) and the 3 multi-scale maps.
        """
        missing = [name for name in FEATURE_NAMES if name not in features]
        if missing:
            raise ValueError(f"features lacks {missing}; expected keys {FEATURE_NAMES}")
        pyramid = [features[name] for name in FEATURE_NAMES]
        for name, feature, channels in zip(FEATURE_NAMES, pyramid, self.feature_channels, strict=True):
            if feature.ndim != 4 or feature.shape[1] != channels:
                raise ValueError(f"{name} must be (batch, {channels}, h, w), got {tuple(feature.shape)}")
        out = super().forward(pyramid, output_attentions=False, output_hidden_states=False)
        return PixelDecoderOutput(
            mask_features=out.mask_features, multi_scale_features=tuple(out.multi_scale_features)
        )


def convert_pixel_decoder(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released `pixel_decoder.*` tensors (prefix stripped) -> `PixelDecoder` state dict.

    Pure renames (model-hf.md §5); `adapter_1.*` and `layer_1.*` keep their names because `PixelDecoder` gives
    those convs biases. Unknown keys pass through unchanged, so strict loading reports them.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        if key in DROPPED_PIXEL_DECODER_KEYS:
            continue
        new_key = key
        for old, new in _PIXEL_DECODER_RENAMES:
            if old.startswith("."):
                new_key = new_key.replace(old, new) if new_key.startswith("encoder.layers.") else new_key
            elif new_key.startswith(old):
                new_key = new + new_key.removeprefix(old)
        converted[new_key] = tensor
    return converted


def released_pixel_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`PixelDecoder` state dict (`pixel_decoder.` stripped) -> released `pixel_decoder.*` names.

    The inverse of `convert_pixel_decoder`: its renames undone in reverse order (the in-layer fragments while the
    key still reads `encoder.layers.`, before `transformer.` is put back).
    """
    released: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        old_key = key
        for old, new in reversed(_PIXEL_DECODER_RENAMES):
            if new.startswith("."):
                old_key = old_key.replace(new, old) if old_key.startswith("encoder.layers.") else old_key
            elif old_key.startswith(new):
                old_key = old + old_key.removeprefix(new)
        released[old_key] = tensor
    return released
