"""HyperSeg's fine-grained visual perceiver (FVP): the 128 ``<temporal>`` tokens and the state carried across frames.

The FVP turns the Swin branch's res3/res4/res5 maps into 128 LLM tokens with a 3-layer Flamingo-style perceiver
resampler whose layer ``i`` cross-attends to pyramid level ``i`` only. In video, the LLM's hidden states at those
128 positions are projected back to the FVP width and become the next frame's latents (model.md §1.4, §1.9;
golden-tiny/video/README.md "Temporal state").

Source: congvvc/HyperSeg@5cfcf52:hyperseg/model/language_model/llava_phi.py (``get_fvp_feat``) and
congvvc/HyperSeg@5cfcf52:hyperseg/model/language_model/perceiver.py (``PerceiverResampler``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..parts.perceiver import PerceiverResampler, PerceiverSettings

# Top-level checkpoint names the FVP owns (no ``model.`` prefix in the released layout). ``temporal_query`` is a
# bare parameter; the others are module prefixes followed by ``.``.
FVP_PARAMETERS = ("temporal_query",)
FVP_MODULES = ("local_project", "level_embed", "mgvp_layers", "expanded_seg_query_project", "temporal_query_project")

# Released FVP keys that inference never reads. Every FVP tensor is used (``temporal_query`` seeds images and the
# first video frame), so nothing is dropped; kept as a named constant so the converters share one shape.
FVP_UNUSED_KEYS: tuple[str, ...] = ()


@dataclass(frozen=True)
class FvpSettings:
    """Sizes of the FVP. Defaults are HyperSeg-3B's released values.

    Attributes:
        dim: perceiver width (512; 4 x the Swin embed dim).
        depth: resampler layers; layer ``i`` reads pyramid level ``i``, so it equals ``len(in_channels)``.
        dim_head: width of one attention head.
        heads: attention heads (inner width ``heads * dim_head`` = 512).
        ff_mult: feed-forward expansion factor.
        num_latents: number of latents = ``<temporal>`` tokens in the LLM.
        in_channels: channels of Swin res3, res4, res5 (2C, 4C, 8C).
        llm_hidden: LLM width (Phi-2: 2560).
        layer_norm_eps: eps of every LayerNorm (PyTorch default, as released).
    """

    dim: int = 512
    depth: int = 3
    dim_head: int = 64
    heads: int = 8
    ff_mult: int = 4
    num_latents: int = 128
    in_channels: tuple[int, ...] = (256, 512, 1024)
    llm_hidden: int = 2560
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "dim_head", "heads", "ff_mult", "num_latents", "llm_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FvpSettings.{name} must be positive, got {getattr(self, name)}")
        if len(self.in_channels) != self.depth:
            raise ValueError(
                f"FvpSettings.in_channels has {len(self.in_channels)} levels but depth is {self.depth}: "
                "layer i attends to pyramid level i, so they must match"
            )

    @property
    def perceiver(self) -> PerceiverSettings:
        """The resampler's sizes."""
        return PerceiverSettings(self.dim, self.depth, self.dim_head, self.heads, self.ff_mult, self.layer_norm_eps)

    @classmethod
    def for_swin(cls, embed_dim: int, llm_hidden: int, **overrides) -> FvpSettings:
        """The released sizing rule: widths (2C, 4C, 8C) -> 4C for Swin embed dim C (C = 128 gives HyperSeg-3B)."""
        values = {"dim": 4 * embed_dim, "in_channels": (2 * embed_dim, 4 * embed_dim, 8 * embed_dim)}
        values.update(overrides)
        return cls(llm_hidden=llm_hidden, **values)


class FineGrainedPerceiver(nn.Module):
    """The FVP with exactly the released parameters, named as the checkpoint's top-level keys.

    ``forward`` gives the ``<temporal>`` tokens for the LLM; ``read_state`` turns the LLM's hidden states at those
    positions into the next frame's latents.
    """

    def __init__(self, settings: FvpSettings | None = None) -> None:
        super().__init__()
        self.settings = settings = settings or FvpSettings()
        self.temporal_query = nn.Parameter(torch.empty(settings.num_latents, settings.dim))
        self.local_project = nn.ModuleList(nn.Conv2d(c, settings.dim, kernel_size=1) for c in settings.in_channels)
        self.level_embed = nn.Embedding(settings.depth, settings.dim)
        self.mgvp_layers = PerceiverResampler(settings.perceiver)
        self.expanded_seg_query_project = nn.Linear(settings.dim, settings.llm_hidden)
        self.temporal_query_project = nn.Linear(settings.llm_hidden, settings.dim)
        # Real runs load released weights; a small random start only keeps random-weight runs finite.
        nn.init.normal_(self.temporal_query, std=0.02)

    def media_tokens(self, res3: Tensor, res4: Tensor, res5: Tensor) -> list[Tensor]:
        """Project each pyramid level to media tokens.

        Args:
            res3, res4, res5: Swin maps (batch, in_channels[i], H_i, W_i) of the padded canvas (res2 is unused;
                padded positions are not masked, as released).

        Returns:
            ``depth`` tensors (batch, H_i * W_i, dim), flattened row-major plus ``level_embed.weight[i]``.
        """
        maps = (res3, res4, res5)
        if len(maps) != len(self.local_project):
            raise ValueError(f"FVP is built for {len(self.local_project)} levels, got {len(maps)}")
        tokens = []
        for i, (feature, project) in enumerate(zip(maps, self.local_project, strict=True)):
            if feature.dim() != 4 or feature.shape[1] != project.in_channels:
                raise ValueError(
                    f"FVP level {i} expects (batch, {project.in_channels}, H, W), got {tuple(feature.shape)}"
                )
            if feature.shape[0] != res3.shape[0]:
                raise ValueError(f"FVP levels disagree on batch size: {res3.shape[0]} vs {feature.shape[0]}")
            # (batch, dim, H, W) -> (batch, H * W, dim)
            projected = project(feature).flatten(2).transpose(1, 2)
            tokens.append(projected + self.level_embed.weight[i])
        return tokens

    def initial_latents(self, batch_size: int) -> Tensor:
        """The learned ``temporal_query`` (num_latents, dim) expanded to (batch, num_latents, dim)."""
        return self.temporal_query.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, res3: Tensor, res4: Tensor, res5: Tensor, latents: Tensor | None = None) -> Tensor:
        """The ``<temporal>`` tokens for one frame (or image).

        Args:
            res3, res4, res5: Swin features, see ``media_tokens``.
            latents: (batch, num_latents, dim) carried state from the previous frame's ``read_state``, or ``None``
                for an image / the first frame (uses the learned ``temporal_query``).

        Returns:
            (batch, num_latents, llm_hidden) embeddings for the LLM's ``<temporal>`` slot.
        """
        media = self.media_tokens(res3, res4, res5)
        batch = res3.shape[0]
        if latents is None:
            latents = self.initial_latents(batch)
        elif latents.shape != (batch, self.settings.num_latents, self.settings.dim):
            raise ValueError(
                f"FVP latents must be (batch={batch}, {self.settings.num_latents}, {self.settings.dim}), "
                f"got {tuple(latents.shape)}"
            )
        return self.expanded_seg_query_project(self.mgvp_layers(media, latents))

    def read_state(self, temporal_hidden: Tensor) -> Tensor:
        """Next frame's latents from the LLM's last hidden states at the ``<temporal>`` positions.

        Args:
            temporal_hidden: (batch, num_latents, llm_hidden), in sequence order.

        Returns:
            (batch, num_latents, dim), to pass as ``latents`` for the next frame.
        """
        expected = (self.settings.num_latents, self.settings.llm_hidden)
        if temporal_hidden.dim() != 3 or tuple(temporal_hidden.shape[1:]) != expected:
            raise ValueError(
                f"temporal hidden states must be (batch, {expected[0]}, {expected[1]}), "
                f"got {tuple(temporal_hidden.shape)}"
            )
        return self.temporal_query_project(temporal_hidden)


def is_fvp_key(key: str) -> bool:
    """Whether a top-level released checkpoint key belongs to the FVP."""
    return key in FVP_PARAMETERS or any(key.startswith(prefix + ".") for prefix in FVP_MODULES)


def fvp_weights(checkpoint: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The FVP's tensors picked out of a whole released checkpoint (they carry no prefix)."""
    return {key: value for key, value in checkpoint.items() if is_fvp_key(key)}


def convert_fvp(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Released FVP tensors -> ``FineGrainedPerceiver.state_dict()`` names.

    The module uses the released names, so this is the identity except that ``FVP_UNUSED_KEYS`` are dropped;
    unknown keys pass through so that strict loading reports them. Works on meta tensors (no data access).
    """
    return {key: value for key, value in weights.items() if key not in FVP_UNUSED_KEYS}


def released_fvp(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``FineGrainedPerceiver`` state (``fvp.`` + the route's name stripped) -> released FVP tensors: the identity."""
    return dict(state)
