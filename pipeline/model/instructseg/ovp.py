"""InstructSeg's object-aware video perceiver (OVP): 128 ``<temporal>`` tokens per reference frame.

For each reference frame the 128 learned latents (``temporal_query``) cross-attend to the frame's projected
SigLIP tokens followed by the instruction's token embeddings (instruction ids + ``[SEG]``), through a 3-layer
perceiver resampler that reads the same media at every layer. The frames' latents are concatenated
frame-major. An image is its own only reference frame (``ovp_on_img``).

Source: congvvc/InstructSeg@0134314 ``instructseg/model/ovp.py`` and ``llava_phi.py`` (``get_ovp_feat_time``);
model.md §1.10; golden-tiny-instructseg/README.md, "What the model computes", step 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..parts.perceiver import PerceiverResampler, PerceiverSettings


@dataclass(frozen=True)
class OvpSettings:
    """Sizes of the OVP; only ``dim`` (the LLM width) varies, the rest are the released constants."""

    dim: int = 2560
    num_latents: int = 128
    depth: int = 3
    dim_head: int = 128
    heads: int = 8
    ff_mult: int = 2
    layer_norm_eps: float = 1e-5

    @property
    def perceiver(self) -> PerceiverSettings:
        return PerceiverSettings(self.dim, self.depth, self.dim_head, self.heads, self.ff_mult, self.layer_norm_eps)


class ObjectVideoPerceiver(nn.Module):
    """``temporal_query`` and ``ovp_layers``, named as the released top-level keys."""

    def __init__(self, settings: OvpSettings | None = None) -> None:
        super().__init__()
        self.settings = settings = settings or OvpSettings()
        self.temporal_query = nn.Parameter(torch.empty(settings.num_latents, settings.dim))
        self.ovp_layers = PerceiverResampler(settings.perceiver)
        # Real runs load released weights; a small random start only keeps random-weight runs finite.
        nn.init.normal_(self.temporal_query, std=0.02)

    def forward(self, frames: Tensor, instruction: Tensor) -> Tensor:
        """The ``<temporal>`` tokens of one expression.

        Args:
            frames: (T_ref, N_r, dim) projected SigLIP tokens of each reference frame (N_r = 729, or fewer when
                the reference frames are pruned).
            instruction: (n_ref, dim) embeddings of the instruction ids followed by ``[SEG]``.

        Returns:
            (T_ref * num_latents, dim), frame-major.
        """
        if frames.dim() != 3 or instruction.dim() != 2 or frames.shape[-1] != instruction.shape[-1]:
            raise ValueError(
                f"OVP needs frames (T, N, dim) and instruction (n, dim), got {tuple(frames.shape)} and "
                f"{tuple(instruction.shape)}"
            )
        t = frames.shape[0]
        media = torch.cat((frames, instruction.unsqueeze(0).expand(t, -1, -1)), dim=1)  # (T, N_r + n_ref, dim)
        latents = self.temporal_query.unsqueeze(0).expand(t, -1, -1)
        return self.ovp_layers(media, latents).flatten(0, 1)
