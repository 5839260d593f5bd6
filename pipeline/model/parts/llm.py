"""The LLM stage: sequence assembly around the placeholders, and one Phi-2 prefill.

HyperSeg's ``eval_seg`` runs a single teacher-forced prefill over the whole template and reads hidden
states back at the seg-query, ``<refer>`` and ``<temporal>`` positions; ``lm_head`` never runs
(congvvc/HyperSeg@5cfcf52:hyperseg/model/language_model/llava_phi.py, ``concat_image_seg_cls_embeds``
and ``prepare_inputs_labels_for_multimodal``; model.md §1.5-1.7).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PhiConfig, PhiModel

from ...config import POSITION_POLICIES
from .prompt import IMAGE_TOKEN_INDEX, REFER_TOKEN_INDEX, SEG_TOKEN_INDEX, TEMPORAL_TOKEN_INDEX


@dataclass(frozen=True)
class LlmSettings:
    """Phi-2 as in Mipha-3B / HyperSeg-3B (model.md §5.2)."""

    vocab_size: int = 51200
    hidden_size: int = 2560
    intermediate_size: int = 10240
    num_layers: int = 32
    num_heads: int = 32
    partial_rotary_factor: float = 0.4
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu_new"
    max_position_embeddings: int = 2048
    pad_token_id: int = 50256


def build_llm(settings: LlmSettings, attn_implementation: str = "sdpa") -> PhiModel:
    """``PhiModel`` (no ``lm_head``: segmentation never decodes text)."""
    config = PhiConfig(
        vocab_size=settings.vocab_size,
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        partial_rotary_factor=settings.partial_rotary_factor,
        rope_theta=settings.rope_theta,
        layer_norm_eps=settings.layer_norm_eps,
        hidden_act=settings.hidden_act,
        max_position_embeddings=settings.max_position_embeddings,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        qk_layernorm=False,
        pad_token_id=settings.pad_token_id,
        attn_implementation=attn_implementation,
    )
    return PhiModel(config)


@dataclass
class Assembled:
    """One LLM input sequence, and where its special spans sit.

    Attributes:
        embeds: ``(L, hidden)``.
        keep: ``(L,)`` bool, False on keys to mask (the final pad/eos token, as the release does).
        positions: ``(L,)`` int64 position ids.
        seg: ``(Q,)`` int64 positions of the seg queries; ``refer``: of the ``<refer>`` span;
        temporal: of the ``<temporal>`` tokens (empty if the prompt has none); ``image``: of the visual tokens
        (``(K,)``, in the order of ``image`` given to ``assemble``).
    """

    embeds: torch.Tensor
    keep: torch.Tensor
    positions: torch.Tensor
    seg: torch.Tensor
    refer: torch.Tensor
    temporal: torch.Tensor
    image: torch.Tensor


def assemble(
    ids: list[int],
    embed_tokens: nn.Embedding,
    *,
    image: torch.Tensor,
    temporal: torch.Tensor | None,
    refer_ids: list[int],
    seg_query: torch.Tensor,
    pad_token_id: int,
    kept: torch.Tensor | None = None,
    n_image: int | None = None,
    position_policy: str = "contiguous",
) -> Assembled:
    """Replace each placeholder of a tokenised prompt by its block of embeddings.

    Args:
        ids: prompt ids with the negative placeholder ids (``prompt.tokenize_prompt``).
        embed_tokens: the LLM's token embedding.
        image: ``(K, hidden)`` projected visual tokens of the frame (K <= N after pruning).
        temporal: ``(T, hidden)`` FVP tokens for ``<temporal>``.
        refer_ids: instruction ids followed by ``[SEG]`` (fills ``<refer>``).
        seg_query: ``(Q, hidden)`` the learned seg queries (fill ``<seg>``).
        pad_token_id: pad (= eos) id; text positions holding it are masked as keys, like the release's
            ``input_ids != pad`` attention mask.
        kept: ``(K,)`` raster indices of the kept visual tokens, for ``position_policy="original"``.
        n_image: tokens per frame before pruning (N), for ``position_policy="original"``.
        position_policy: ``contiguous`` (positions 0..L-1, what the release computes when tokens are
            removed) or ``original`` (every token keeps the position it has without pruning).
    """
    if position_policy not in POSITION_POLICIES:
        raise ValueError(f"unknown position policy {position_policy!r}; expected one of {POSITION_POLICIES}")
    device = image.device
    blocks, keep, spans, shifts = [], [], {}, []
    start = 0

    def add(block: torch.Tensor, mask: torch.Tensor, name: str | None = None, shift: torch.Tensor | int = 0):
        nonlocal start
        if name is not None:
            spans[name] = torch.arange(start, start + len(block), device=device)
        blocks.append(block)
        keep.append(mask)
        shifts.append(torch.as_tensor(shift, device=device).expand(len(block)))
        start += len(block)

    image_shift: torch.Tensor | int = 0
    after_image = 0
    if position_policy == "original":
        if kept is None or n_image is None:
            raise ValueError("position_policy='original' needs the kept indices and the unpruned count")
        image_shift = kept.to(device) - torch.arange(len(kept), device=device)
        after_image = n_image - len(kept)
    seen_image = False
    text: list[int] = []

    def flush():
        if text:
            tensor = torch.tensor(text, device=device)
            add(embed_tokens(tensor), tensor != pad_token_id, shift=after_image if seen_image else 0)
            text.clear()

    for token in ids:
        if token >= 0:
            text.append(token)
            continue
        flush()
        shift = after_image if seen_image else 0
        if token == IMAGE_TOKEN_INDEX:
            add(image, torch.ones(len(image), dtype=torch.bool, device=device), "image", image_shift)
            seen_image = True
        elif token == TEMPORAL_TOKEN_INDEX:
            if temporal is None:
                raise ValueError("the prompt has <temporal> but no temporal tokens were given")
            add(temporal, torch.ones(len(temporal), dtype=torch.bool, device=device), "temporal", shift)
        elif token == REFER_TOKEN_INDEX:
            refer = embed_tokens(torch.tensor(refer_ids, device=device))
            add(refer, torch.ones(len(refer), dtype=torch.bool, device=device), "refer", shift)
        elif token == SEG_TOKEN_INDEX:
            add(seg_query, torch.ones(len(seg_query), dtype=torch.bool, device=device), "seg", shift)
        else:
            raise ValueError(f"unsupported placeholder id {token} in the prompt")
    flush()
    for name in ("image", "refer", "seg"):
        if name not in spans:
            raise ValueError(f"the prompt has no <{name}> placeholder")
    embeds = torch.cat(blocks)
    positions = torch.arange(len(embeds), device=device) + torch.cat(shifts)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return Assembled(
        embeds=embeds,
        keep=torch.cat(keep),
        positions=positions,
        seg=spans["seg"],
        refer=spans["refer"],
        temporal=spans.get("temporal", empty),
        image=spans["image"],
    )


@dataclass
class LlmOutput:
    """Hidden states read back after the prefill, batched over sequences.

    Attributes:
        seg: ``(B, Q, hidden)`` at the seg-query positions.
        refer: ``(B, 1, hidden)`` mean over the ``<refer>`` span (instruction + [SEG]).
        refer_states: per sequence, ``(n_ref, hidden)`` the whole ``<refer>`` span (InstructSeg's VMTF reads it).
        temporal: ``(B, T, hidden)`` at the ``<temporal>`` positions (T = 0 without them).
        lengths: ``(B,)`` sequence lengths.
        image: ``(B, K, hidden)`` at the visual tokens' positions, only when asked (training's grounding term;
            at HyperSeg-3B size it is 7 MB per expression, so inference does not keep it).
    """

    seg: torch.Tensor
    refer: torch.Tensor
    temporal: torch.Tensor
    lengths: torch.Tensor
    refer_states: list[torch.Tensor]
    image: torch.Tensor | None = None


def run_llm(llm: PhiModel, sequences: list[Assembled]) -> LlmOutput:
    """One batched prefill over assembled sequences (right-padded; pad keys masked)."""
    embeds, mask, positions = pad_sequences(sequences, 0)
    states = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    return read_states(states, sequences)


def run_llm_shared(
    llm: PhiModel, sequences: list[Assembled], owner: list[int], prefix: int, image_states: bool = False
) -> LlmOutput:
    """``run_llm`` where the first ``prefix`` tokens are the same for all sequences of one owner (frame).

    The prefix runs once per frame and its keys and values are cached; each sequence then runs only its
    suffix against its frame's cache. The LLM is causal, so the prefix's states do not depend on what
    follows, and the result equals ``run_llm`` up to floating-point summation order.

    Args:
        sequences: assembled sequences, all with the same first ``prefix`` tokens within an owner.
        owner: per sequence, the index of its frame (0..F-1, each used).
        prefix: shared tokens at the start of every sequence.
    """
    first = {f: e for e, f in reversed(list(enumerate(owner)))}  # frame -> its first sequence
    heads = [sequences[first[f]] for f in range(len(first))]
    device = heads[0].embeds.device
    prefix_embeds = torch.stack([h.embeds[:prefix] for h in heads])  # (F, P, hidden)
    prefix_mask = torch.stack([h.keep[:prefix] for h in heads]).long()  # (F, P)
    prefix_positions = torch.stack([h.positions[:prefix] for h in heads])
    out = llm(inputs_embeds=prefix_embeds, attention_mask=prefix_mask, position_ids=prefix_positions, use_cache=True)
    rows = torch.tensor(owner, device=device)
    cache = out.cache
    cache.batch_select_indices(rows)  # (F, ...) -> (E, ...): each sequence gets its frame's keys and values
    embeds, mask, positions = pad_sequences(sequences, prefix)
    mask = torch.cat([prefix_mask.index_select(0, rows), mask], dim=1)  # keys: prefix then suffix
    suffix = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache).last_hidden_state
    states = torch.cat([out.last_hidden_state.index_select(0, rows), suffix], dim=1)
    return read_states(states, sequences, image_states)


def pad_sequences(sequences: list[Assembled], start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings, key mask and positions of ``sequences[i][start:]``, right-padded to one width."""
    width = max(len(s.embeds) for s in sequences) - start
    b, hidden = len(sequences), sequences[0].embeds.shape[1]
    device, dtype = sequences[0].embeds.device, sequences[0].embeds.dtype
    embeds = torch.zeros(b, width, hidden, device=device, dtype=dtype)
    mask = torch.zeros(b, width, dtype=torch.long, device=device)
    positions = torch.zeros(b, width, dtype=torch.long, device=device)
    for i, s in enumerate(sequences):
        n = len(s.embeds) - start
        embeds[i, :n], mask[i, :n], positions[i, :n] = s.embeds[start:], s.keep[start:].long(), s.positions[start:]
    return embeds, mask, positions


def read_states(states: torch.Tensor, sequences: list[Assembled], image_states: bool = False) -> LlmOutput:
    """The seg, refer and temporal read-outs from ``(B, L, hidden)`` final states (and the visual tokens' if
    ``image_states``)."""
    b, device = len(sequences), states.device
    rows = torch.arange(b, device=device)[:, None]
    seg = states[rows, torch.stack([s.seg for s in sequences])]
    refer_states = [states[i, s.refer] for i, s in enumerate(sequences)]
    refer = torch.stack([r.mean(0, keepdim=True) for r in refer_states])
    temporal = states[rows, torch.stack([s.temporal for s in sequences])]
    lengths = torch.tensor([len(s.embeds) for s in sequences])
    image = states[rows, torch.stack([s.image for s in sequences])] if image_states else None
    return LlmOutput(seg=seg, refer=refer, temporal=temporal, lengths=lengths, refer_states=refer_states, image=image)


def convert_llm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released ``model.{embed_tokens,layers,final_layernorm}.*`` (``model.`` stripped) are PhiModel's own names."""
    return dict(weights)


def released_llm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``PhiModel`` state (``llm.`` stripped) -> released names (``model.`` is the route's prefix); no ``lm_head``."""
    return dict(state)
