"""InstructSeg's vision-guided multi-granularity text fusion (VMTF): the SEG embedding the decoder's queries score.

The LLM's ``<refer>`` span (instruction + ``[SEG]``) is mean-pooled; the pooled state and every span state,
projected to the VMTF width, are the latents of a 3-layer perceiver whose media are the key frame's Swin res5
tokens (projected by a 1x1 conv). The first latent after the final LayerNorm, concatenated with a direct
projection of the pooled state, is projected to the decoder width.

Source: congvvc/InstructSeg@0134314 ``instructseg/model/vmtf.py`` and ``llava_phi.py``; model.md §1.10;
golden-tiny-instructseg/README.md, "What the model computes", step 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..parts.perceiver import PerceiverResampler, PerceiverSettings


@dataclass(frozen=True)
class VmtfSettings:
    """Sizes of the VMTF. Defaults are InstructSeg's (Swin-B res5 width 1024, Phi-2 2560, decoder 256).

    Attributes:
        dim: VMTF width, 8C for Swin embed dim C (the release hard-codes 1024 = 8 x 128).
        in_channels: Swin res5 channels (8C).
        llm_hidden: LLM width.
        out_dim: decoder hidden dim (the SEG embedding's width).
    """

    dim: int = 1024
    in_channels: int = 1024
    llm_hidden: int = 2560
    out_dim: int = 256
    depth: int = 3
    dim_head: int = 128
    heads: int = 8
    ff_mult: int = 2
    layer_norm_eps: float = 1e-5

    @classmethod
    def for_swin(cls, embed_dim: int, llm_hidden: int, out_dim: int) -> VmtfSettings:
        """The sizing rule of golden-tiny-instructseg (8C wide; C = 128 gives the released structure)."""
        return cls(dim=8 * embed_dim, in_channels=8 * embed_dim, llm_hidden=llm_hidden, out_dim=out_dim)

    @property
    def perceiver(self) -> PerceiverSettings:
        return PerceiverSettings(
            self.dim, self.depth, self.dim_head, self.heads, self.ff_mult, self.layer_norm_eps, latents_as_keys="first"
        )


class TextFusion(nn.Module):
    """The VMTF and the SEG projections, named as the released top-level keys."""

    def __init__(self, settings: VmtfSettings | None = None) -> None:
        super().__init__()
        self.settings = s = settings or VmtfSettings()
        self.local_project = nn.Conv2d(s.in_channels, s.dim, kernel_size=1)
        self.text_vmtf_projector = nn.Linear(s.llm_hidden, s.dim)
        self.origin_SEG_token_projector = nn.Linear(s.llm_hidden, s.dim)  # noqa: N815 (the released name)
        self.vmtf_layers = PerceiverResampler(s.perceiver)
        self.SEG_token_projector = nn.Linear(2 * s.dim, s.out_dim)  # noqa: N815 (the released name)

    def forward(self, refer: Tensor, res5: Tensor) -> Tensor:
        """The SEG embedding of one expression.

        Args:
            refer: (n_ref, llm_hidden) the LLM's last hidden states over the ``<refer>`` span.
            res5: (8C, h, w) the key frame's Swin res5.

        Returns:
            (1, out_dim).
        """
        pooled = refer.mean(0, keepdim=True)  # (1, llm_hidden)
        latents = self.text_vmtf_projector(torch.cat((pooled, refer)))[None]  # (1, 1 + n_ref, dim)
        media = self.local_project(res5[None]).flatten(2).transpose(1, 2)  # (1, h * w, dim)
        fused = self.vmtf_layers(media, latents)[:, 0]  # (1, dim): the first latent
        origin = self.origin_SEG_token_projector(pooled)  # (1, dim)
        return self.SEG_token_projector(torch.cat((origin, fused), dim=-1))
