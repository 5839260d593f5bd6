"""The Flamingo-style perceiver resampler that HyperSeg's FVP and InstructSeg's OVP and VMTF are all built from.

Latents cross-attend to ``concat(media, latents)`` (media first), then pass a feed-forward; each with a residual;
a final LayerNorm. The released parameter names (``layers.{i}.0.norm_media``, ``to_q``, ``to_kv``, ``to_out``,
``layers.{i}.1.{0,1,3}``, ``norm``) are kept, so checkpoints load without renaming.

Source: congvvc/HyperSeg@5cfcf52:hyperseg/model/language_model/perceiver.py (``PerceiverResampler``), and the
same block in congvvc/InstructSeg@0134314 ``ovp.py`` / ``vmtf.py`` (golden-tiny-instructseg/README.md §"What the
model computes": OVP step 2, VMTF step 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class PerceiverSettings:
    """Sizes of one resampler.

    Attributes:
        dim: token width of the latents and media.
        depth: (attention, feed-forward) layers.
        dim_head, heads: attention heads (inner width ``heads * dim_head``, independent of ``dim``).
        ff_mult: feed-forward expansion factor.
        latents_as_keys: which latents join the media as keys and values: ``all`` (Flamingo, the FVP and OVP)
            or ``first`` (InstructSeg's VMTF, whose output is its first latent).
    """

    dim: int
    depth: int = 3
    dim_head: int = 128
    heads: int = 8
    ff_mult: int = 2
    layer_norm_eps: float = 1e-5
    latents_as_keys: str = "all"

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "dim_head", "heads", "ff_mult"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PerceiverSettings.{name} must be positive, got {getattr(self, name)}")
        if self.latents_as_keys not in ("all", "first"):
            raise ValueError(f"latents_as_keys must be 'all' or 'first', got {self.latents_as_keys!r}")


class PerceiverAttention(nn.Module):
    """Latents attend to ``concat(LN(media), LN(latents))``, no biases; returns the update (the caller adds it)."""

    def __init__(self, settings: PerceiverSettings) -> None:
        super().__init__()
        inner = settings.heads * settings.dim_head
        self.heads = settings.heads
        self.scale = settings.dim_head**-0.5
        self.first_latent_only = settings.latents_as_keys == "first"
        self.norm_media = nn.LayerNorm(settings.dim, eps=settings.layer_norm_eps)
        self.norm_latents = nn.LayerNorm(settings.dim, eps=settings.layer_norm_eps)
        self.to_q = nn.Linear(settings.dim, inner, bias=False)
        self.to_kv = nn.Linear(settings.dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, settings.dim, bias=False)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(batch, tokens, heads * dim_head) -> (batch, heads, tokens, dim_head)."""
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, media: Tensor, latents: Tensor) -> Tensor:
        """Attention update for the latents.

        Args:
            media: (batch, media_tokens, dim).
            latents: (batch, num_latents, dim).

        Returns:
            (batch, num_latents, dim).
        """
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = self._split_heads(self.to_q(latents)) * self.scale
        extra = latents[:, :1] if self.first_latent_only else latents
        k, v = self.to_kv(torch.cat((media, extra), dim=1)).chunk(2, dim=-1)
        attn = torch.matmul(q, self._split_heads(k).transpose(-1, -2)).softmax(dim=-1)
        out = torch.matmul(attn, self._split_heads(v))  # (batch, heads, num_latents, dim_head)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class PerceiverFeedForward(nn.Sequential):
    """LayerNorm -> Linear -> GELU (erf) -> Linear, no biases; indices 0, 1, 3 match the checkpoint keys."""

    def __init__(self, settings: PerceiverSettings) -> None:
        inner = settings.dim * settings.ff_mult
        super().__init__(
            nn.LayerNorm(settings.dim, eps=settings.layer_norm_eps),
            nn.Linear(settings.dim, inner, bias=False),
            nn.GELU(),
            nn.Linear(inner, settings.dim, bias=False),
        )


class PerceiverResampler(nn.Module):
    """``depth`` (attention, feed-forward) pairs, then a final LayerNorm."""

    def __init__(self, settings: PerceiverSettings) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(settings), PerceiverFeedForward(settings)])
            for _ in range(settings.depth)
        )
        self.norm = nn.LayerNorm(settings.dim, eps=settings.layer_norm_eps)

    def forward(self, media: Tensor | Sequence[Tensor], latents: Tensor) -> Tensor:
        """Resample the latents.

        Args:
            media: (batch, tokens, dim) read by every layer, or ``depth`` such tensors, layer ``i`` reading the
                ``i``-th (the FVP's one pyramid level per layer).
            latents: (batch, num_latents, dim).

        Returns:
            (batch, num_latents, dim), after the final LayerNorm.
        """
        levels = [media] * len(self.layers) if isinstance(media, Tensor) else list(media)
        if len(levels) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} media levels, got {len(levels)}")
        for (attention, feed_forward), level in zip(self.layers, levels, strict=True):
            latents = latents + attention(level, latents)
            latents = latents + feed_forward(latents)
        return self.norm(latents)
