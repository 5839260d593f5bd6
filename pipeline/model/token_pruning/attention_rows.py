"""Attention weights recomputed from one layer's queries and keys, so the forward pass keeps its fused kernel.

SDPA and FlashAttention never return the attention map. The baselines that rank tokens by attention need only a
few numbers of it: FastV one query row of an LLM layer, VisionZip the attention each SigLIP token receives. A
forward pre-hook on the layer's ``self_attn`` records its input (the hidden states after the input LayerNorm,
and Phi's rotary ``(cos, sin)``); the layer's own ``q_proj`` / ``k_proj`` then rebuild only the rows needed, at
O(H·rows·L·d_h) (pruning.md §3, §9 items 6-7). The forward itself is untouched.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.phi.modeling_phi import apply_rotary_pos_emb

# Query rows per step of the received-attention sum: the largest score tensor is (B, H, 128, N), never (B, H, N, N).
QUERY_BLOCK = 128


@dataclass
class AttentionInput:
    """What an attention module was last called with (filled by ``capture_attention_input``).

    Attributes:
        hidden_states: ``(batch, L, hidden)`` the module's input, after the layer's input LayerNorm.
        position_embeddings: Phi's rotary ``(cos, sin)``, each ``(batch, L, rotary_dim)``; None for SigLIP.
    """

    hidden_states: torch.Tensor | None = None
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None

    def checked(self) -> torch.Tensor:
        """The recorded hidden states; raises if the hooked module never ran."""
        if self.hidden_states is None:
            raise RuntimeError("the hooked attention module did not run inside the capture block")
        return self.hidden_states


@dataclass(frozen=True)
class ReceivedAttention:
    """What VisionZip needs from one SigLIP layer.

    Attributes:
        scores: ``(batch, N)`` float32, ``mean over heads and queries of softmax(q kᵀ / √d_h)`` per key: the
            attention each token receives.
        keys: ``(batch, N, head_dim)`` the layer's keys averaged over heads (VisionZip's merge metric).
    """

    scores: torch.Tensor
    keys: torch.Tensor


@contextmanager
def capture_attention_input(attention: nn.Module) -> Iterator[AttentionInput]:
    """Record the input of ``attention`` (a layer's ``self_attn``) while the block runs; the hook goes after.

    Transformers' decoder and encoder layers call ``self_attn(hidden_states=..., position_embeddings=...)`` by
    keyword; positional calls are recorded too.
    """
    captured = AttentionInput()

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        captured.position_embeddings = kwargs.get("position_embeddings")

    handle = attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


def _heads(projection: nn.Linear, x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(B, L, hidden) -> (B, heads, L, head_dim)``, as the attention modules shape their projections."""
    return projection(x).view(*x.shape[:-1], -1, head_dim).transpose(1, 2)


def received_attention(attention: nn.Module, hidden: torch.Tensor, block: int = QUERY_BLOCK) -> ReceivedAttention:
    """Attention received per token at one bidirectional SigLIP layer, from its recorded input.

    The scores are summed over ``block`` query rows at a time, so no ``(B, H, N, N)`` tensor exists; the
    logits are formed as ``SiglipAttention``'s eager path does (``matmul(q, kᵀ) * scale``, softmax in float32).

    Args:
        attention: the layer's ``SiglipAttention`` (``q_proj``, ``k_proj``, ``head_dim``, ``scale``).
        hidden: ``(batch, N, hidden)`` its input (``capture_attention_input``).
        block: query rows per step.

    Returns:
        ``ReceivedAttention``: scores ``(batch, N)`` and head-averaged keys ``(batch, N, head_dim)``.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1 query row, got {block}")
    q = _heads(attention.q_proj, hidden, attention.head_dim)  # (B, H, N, d_h)
    k = _heads(attention.k_proj, hidden, attention.head_dim)
    b, h, n, _ = q.shape
    total = torch.zeros(b, h, n, dtype=torch.float32, device=hidden.device)
    keys_t = k.transpose(2, 3)
    for lo in range(0, n, block):
        logits = torch.matmul(q[:, :, lo : lo + block], keys_t) * attention.scale  # (B, H, rows, N)
        total += torch.softmax(logits, dim=-1, dtype=torch.float32).sum(dim=2)
    return ReceivedAttention(scores=total.mean(dim=1) / n, keys=k.mean(dim=1))


def last_row_attention(
    attention: nn.Module, captured: AttentionInput, key_mask: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Head-averaged causal attention of one query row per sequence at a Phi layer, from its recorded input.

    ``softmax(q_i Kᵀ / √d_h)`` over the keys ``j <= i`` with ``key_mask`` set, as ``PhiAttention`` computes it:
    q and k from the layer's projections, partial rotary on their first ``rotary_ndims`` dimensions
    (transformers' own ``apply_rotary_pos_emb``), keys repeated for grouped heads. Masked keys get weight 0.

    Args:
        attention: the layer's ``PhiAttention``.
        captured: its recorded input, with ``position_embeddings``.
        key_mask: ``(batch, L)`` bool, True for the keys a query may attend to (False on padding and on the
            masked final end-of-text).
        query: ``(batch,)`` int64 position of the query row of each sequence.

    Returns:
        ``(batch, L)`` float32 attention weights (each row sums to 1 over its allowed keys).
    """
    hidden = captured.checked()
    if captured.position_embeddings is None:
        raise RuntimeError("the hooked Phi attention was called without position_embeddings")
    b, length, _ = hidden.shape
    cos, sin = (x.expand(b, -1, -1) for x in captured.position_embeddings)  # (1, L, r) when positions were shared
    rows = torch.arange(b, device=hidden.device)
    q = _heads(attention.q_proj, hidden[rows, query][:, None], attention.head_dim)  # (B, H, 1, d_h)
    k = _heads(attention.k_proj, hidden, attention.head_dim)  # (B, H_kv, L, d_h)
    if attention.qk_layernorm:
        q, k = attention.q_layernorm(q), attention.k_layernorm(k)
    r = attention.rotary_ndims
    # apply_rotary_pos_emb rotates q and k with the same (cos, sin): the query row has its own position.
    q_rot, _ = apply_rotary_pos_emb(q[..., :r], q[..., :r], cos[rows, query][:, None], sin[rows, query][:, None])
    _, k_rot = apply_rotary_pos_emb(k[..., :r], k[..., :r], cos, sin)
    q = torch.cat((q_rot, q[..., r:]), dim=-1)
    k = torch.cat((k_rot, k[..., r:]), dim=-1).repeat_interleave(attention.num_key_value_groups, dim=1)
    logits = torch.matmul(q, k.transpose(2, 3))[:, :, 0] * attention.scaling  # (B, H, L)
    causal = torch.arange(length, device=hidden.device)[None, :] <= query[:, None]
    allowed = (key_mask.to(device=hidden.device, dtype=torch.bool) & causal)[:, None]
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1, dtype=torch.float32).mean(dim=1)
