"""The mask branch's own Swin backbone (`vision_tower_mask`), built on transformers' `SwinBackbone`.

HyperSeg feeds the padded Swin view (see `preprocess.swin_view`) through an original-layout Swin-B
(congvvc/HyperSeg@5cfcf52:hyperseg/model/multimodal_encoder/swin_trans.py, `D2SwinTransformer`) and uses the
four stage outputs, each LayerNorm-ed before downsampling, as `res2..res5` for the pixel decoder and the FVP.
transformers' `SwinBackbone` computes the same thing (measured bitwise with eager attention, model-hf.md §4);
only the parameter names differ, which `convert_swin` maps.

`SwinBackbone` rather than `SwinModel` matters: the backbone runs with `always_partition=True`, so like the
original it keeps the window size and the shifted windows even when a map is no larger than the window (res5 is
4x4 under a 6x6 window in the tiny checkpoint); `SwinModel` would clamp the window and drop the shift there.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import SwinBackbone, SwinConfig

# Names of the four outputs, from stride 4 to stride 32 (detectron2's convention, used by the whole mask branch).
FEATURE_NAMES: tuple[str, ...] = ("res2", "res3", "res4", "res5")

# Released keys that inference never reads. The relative position index is a fixed function of the window size;
# transformers rebuilds it as a non-persistent buffer with the same values (model-hf.md §4), so it is not loaded.
DROPPED_SWIN_KEY_SUFFIXES: tuple[str, ...] = ("attn.relative_position_index",)

ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa")


@dataclass(frozen=True)
class SwinSettings:
    """Sizes of the mask-branch Swin. Defaults are HyperSeg-3B's Swin-B (`build_swin_b`, mask config `MODEL.SWIN`).

    Attributes:
        embed_dim: channels C of stage 1; the stages have (C, 2C, 4C, 8C).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: side of the attention window, in tokens.
        patch_size: side of the patch embedding (the stride of res2).
        mlp_ratio: MLP hidden width / channels.
        qkv_bias: whether the fused qkv projection has a bias.
        drop_path_rate: stochastic depth; 0 because only inference is supported (the release trains with 0.3).
        layer_norm_eps: eps of every LayerNorm (torch's default, as in the original `nn.LayerNorm` calls).
    """

    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 12
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if len(self.depths) != len(FEATURE_NAMES) or len(self.num_heads) != len(FEATURE_NAMES):
            raise ValueError(
                f"Swin needs {len(FEATURE_NAMES)} stages, got depths={self.depths} and num_heads={self.num_heads}"
            )
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**stage) % heads != 0:
                raise ValueError(f"stage {stage}: {self.embed_dim * 2**stage} channels not divisible by {heads} heads")

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5: (C, 2C, 4C, 8C)."""
        return tuple(self.embed_dim * 2**stage for stage in range(len(self.depths)))

    @classmethod
    def from_mask_config(cls, mask_config: Mapping) -> "SwinSettings":
        """Reads `MODEL.SWIN` of a resolved Mask2Former config (e.g. `checkpoint/mask_config.json`).

        `build_swin_b` hard-codes patch size 4, MLP ratio 4.0 and qkv bias, so the released configs leave out
        Mask2Former's `PATCH_SIZE`, `MLP_RATIO` and `QKV_BIAS`; they are read when present (`save_pretrained` writes
        them). `DROP_PATH_RATE` is not read: the released configs hold the training value, inference uses 0.
        """
        swin = mask_config["MODEL"]["SWIN"]
        return cls(
            embed_dim=int(swin["EMBED_DIM"]),
            depths=tuple(int(d) for d in swin["DEPTHS"]),
            num_heads=tuple(int(h) for h in swin["NUM_HEADS"]),
            window_size=int(swin["WINDOW_SIZE"]),
            patch_size=int(swin.get("PATCH_SIZE", cls.patch_size)),
            mlp_ratio=float(swin.get("MLP_RATIO", cls.mlp_ratio)),
            qkv_bias=bool(swin.get("QKV_BIAS", cls.qkv_bias)),
        )

    def to_hf_config(self, attn_implementation: str = "eager") -> SwinConfig:
        """The equivalent `SwinConfig`, with all four stages as backbone outputs."""
        return SwinConfig(
            embed_dim=self.embed_dim,
            depths=list(self.depths),
            num_heads=list(self.num_heads),
            window_size=self.window_size,
            patch_size=self.patch_size,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            hidden_act="gelu",  # erf GELU, as the original's nn.GELU
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            drop_path_rate=self.drop_path_rate,
            use_absolute_embeddings=False,  # ape=False in HyperSeg
            layer_norm_eps=self.layer_norm_eps,
            out_features=[f"stage{i + 1}" for i in range(len(self.depths))],
            attn_implementation=attn_implementation,
        )


class MaskBackbone(nn.Module):
    """Swin feature pyramid of the mask branch.

    Args:
        settings: Swin sizes.
        attn_implementation: "eager" (bitwise equal to the released code) or "sdpa" (≤3e-6 off, faster).
    """

    def __init__(self, settings: SwinSettings, attn_implementation: str = "eager") -> None:
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
        self.settings = settings
        self.backbone = SwinBackbone(settings.to_hf_config(attn_implementation))
        # SwinModel's final LayerNorm acts on the last stage *after* the encoder; the backbone outputs use their
        # own per-stage norms instead, so that LayerNorm is dead weight that the release has no tensors for.
        self.backbone.swin.layernorm = nn.Identity()

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5."""
        return self.settings.feature_channels

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs Swin on normalised, padded canvases.

        Args:
            pixels: (batch, 3, height, width) float, the Swin view (`preprocess.swin_view`).

        Returns:
            {"res2": (batch, C, H/4, W/4), "res3": (batch, 2C, H/8, W/8), "res4": (batch, 4C, H/16, W/16),
            "res5": (batch, 8C, H/32, W/32)}, NCHW, each after its stage LayerNorm.
        """
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (batch, 3, height, width), got {tuple(pixels.shape)}")
        feature_maps = self.backbone(pixels).feature_maps
        return dict(zip(FEATURE_NAMES, feature_maps, strict=True))


# Released block fragment -> `SwinBackbone` fragment, inside `layers.{i}.blocks.{j}.` (fused qkv handled apart).
_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.o_proj."),
    ("attn.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
)
_QKV = ("q_proj", "k_proj", "v_proj")  # the order of the fused projection's row blocks


def _convert_swin_key(key: str) -> str:
    """Maps one original-Swin name (prefix stripped) to its name under `MaskBackbone` (q/k/v handled apart)."""
    if key.startswith("patch_embed.proj."):
        return "backbone.swin.embeddings.patch_embeddings.projection." + key.removeprefix("patch_embed.proj.")
    if key.startswith("patch_embed.norm."):
        return "backbone.swin.embeddings.norm." + key.removeprefix("patch_embed.norm.")
    if key.startswith("norm") and key[4:5].isdigit():
        # norm{i}: the LayerNorm on output i, i.e. on stage i + 1 (model-hf.md §4).
        index, rest = key[4:].split(".", 1)
        return f"backbone.hidden_states_norms.stage{int(index) + 1}.{rest}"
    if key.startswith("layers."):
        for old, new in _BLOCK_RENAMES:
            key = key.replace(f".{old}", f".{new}")
        return "backbone.swin.encoder." + key
    return key  # unknown: passed through so that strict loading names it


def convert_swin(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released `model.vision_tower_mask.*` tensors (prefix stripped) -> `MaskBackbone` state dict.

    The fused `attn.qkv` projection is split into q/k/v with `chunk(3, 0)`: the original reshapes its output to
    (3, heads, head_dim), so rows [0, C) are q, [C, 2C) k and [2C, 3C) v, each head-major like HF's projections.
    Works on meta tensors (renames and views only).
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        if key.endswith(DROPPED_SWIN_KEY_SUFFIXES):
            continue
        if key.startswith("layers.") and ".attn.qkv." in key:
            prefix, param = key.split(".attn.qkv.")
            for name, part in zip(_QKV, tensor.chunk(3, dim=0), strict=True):
                converted[f"backbone.swin.encoder.{prefix}.attention.{name}.{param}"] = part
            continue
        converted[_convert_swin_key(key)] = tensor
    return converted


def _released_swin_key(key: str) -> str:
    """Inverse of `_convert_swin_key`: one `MaskBackbone` name back to the original-Swin name."""
    if key.startswith("backbone.swin.embeddings.patch_embeddings.projection."):
        return "patch_embed.proj." + key.removeprefix("backbone.swin.embeddings.patch_embeddings.projection.")
    if key.startswith("backbone.swin.embeddings.norm."):
        return "patch_embed.norm." + key.removeprefix("backbone.swin.embeddings.norm.")
    if key.startswith("backbone.hidden_states_norms.stage"):
        stage, rest = key.removeprefix("backbone.hidden_states_norms.stage").split(".", 1)
        return f"norm{int(stage) - 1}.{rest}"
    if key.startswith("backbone.swin.encoder.layers."):
        key = key.removeprefix("backbone.swin.encoder.")
        for old, new in reversed(_BLOCK_RENAMES):
            key = key.replace(f".{new}", f".{old}")
        return key
    return key  # unknown: passed through, so that the reload check in `released_state_dict` names it


def released_swin(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`MaskBackbone` state dict (`swin.` stripped) -> released `model.vision_tower_mask.*` names and layouts.

    The inverse of `convert_swin`: q, k and v are re-fused into `attn.qkv` with `torch.cat` in the order
    `convert_swin` splits them. `attn.relative_position_index` is not written: it is a fixed function of the window
    size that the module rebuilds (and the release recomputes it at build time too).
    """
    released: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key.startswith("backbone.swin.encoder.layers.") and ".attention." in key:
            block, rest = key.removeprefix("backbone.swin.encoder.").split(".attention.")
            name, param = rest.split(".", 1)
            if name in _QKV:
                fused.setdefault(f"{block}.attn.qkv.{param}", {})[name] = tensor
                continue
        released[_released_swin_key(key)] = tensor
    for key, parts in fused.items():
        if set(parts) != set(_QKV):
            raise ValueError(f"{key}: q, k and v are needed to re-fuse it, got {sorted(parts)}")
        released[key] = torch.cat([parts[name] for name in _QKV], dim=0)
    return released
