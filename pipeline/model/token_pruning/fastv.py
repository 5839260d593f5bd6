"""FastV (Chen et al., ECCV 2024) inside the Phi LLM: image tokens ranked by the last position's attention.

pkunlp-icler/FastV@d1659729:src/transformers/src/transformers/models/llama/modeling_llama.py (pruning.md §5.3):
when the layer loop reaches ``idx == AGG_LAYER`` (K), it takes the attention of the layer before it, K-1,
averages it over heads, reads the last query row over the image span, keeps the top-ranked image tokens and,
in its in-place variant, drops the others from the hidden states, the mask and the position ids for layers K
onwards (the kept tokens keep their position ids). Our reading of "layer K" is the same: layers 0..K-1 see
every token, layer K-1 (the last one that sees them all) ranks them, layers K.. see only the kept ones.

The attention row is recomputed from layer K-1's queries and keys (``attention_rows``), so every layer runs
SDPA; nothing materialises a full map. FastV is text-conditioned: the kept tokens differ per expression, so the
shared-prefix path (``llm.run_llm_shared``) cannot serve it and every sequence runs whole. In HyperSeg's template
the instruction follows the image, so at K = 1 the ranking query (a seg query) has read nothing yet and the
expression changes the ranking only through its length (the RoPE distances); from K = 2 on it has read the text.
"""

import dataclasses
import numbers
from dataclasses import dataclass

import torch
from transformers import PhiModel
from transformers.masking_utils import create_causal_mask

from ...config import PruningConfig
from ...pruning import budget
from ..parts.llm import Assembled, LlmOutput, pad_sequences, read_states, run_llm
from .attention_rows import capture_attention_input, last_row_attention

# The aggregation layer usually quoted from the paper (the repository's demo uses K = 3).
DEFAULT_LAYER = 2


@dataclass
class PrunedLlmOutput:
    """An LLM prefill, with the image tokens FastV kept in it.

    Attributes:
        llm: the read-outs, as ``run_llm``'s; ``lengths`` are the input lengths (every token).
        kept: per sequence, ``(K_i,)`` int64 kept image tokens, ascending: positions within its image span from
            ``run_llm_fastv``, raster indices from ``run_llm_pruned``; None when the LLM dropped nothing.
    """

    llm: LlmOutput
    kept: list[torch.Tensor] | None


def check_layer(layer: object, num_layers: int) -> int:
    """``layer`` as an int in ``[1, num_layers - 1]``: at least one layer sees every token, one sees the kept."""
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 1 <= layer < num_layers:
        raise ValueError(
            f"fastv layer must be an int in [1, {num_layers - 1}] for a {num_layers}-layer LLM, got {layer!r}"
        )
    return int(layer)


def run_llm_pruned(
    llm: PhiModel, sequences: list[Assembled], pruning: PruningConfig, frame_kept: torch.Tensor, owner: list[int]
) -> PrunedLlmOutput:
    """A prefill of whole sequences for ``pruning``: ``run_llm_fastv`` for FastV (its ``layer`` from the options),
    else ``run_llm``.

    Args:
        frame_kept: ``(F, K)`` the frames' kept raster indices (the encoder's selection; all N for FastV), which
            map each sequence's image-span positions back to raster indices.
        owner: per sequence, its frame.
    """
    if pruning.method != "fastv":
        return PrunedLlmOutput(llm=run_llm(llm, sequences), kept=None)
    out = run_llm_fastv(llm, sequences, pruning.keep, **dict(pruning.options))
    kept = [frame_kept[f][k] for f, k in zip(owner, out.kept, strict=True)]
    return PrunedLlmOutput(llm=out.llm, kept=kept)


def run_llm_fastv(
    llm: PhiModel, sequences: list[Assembled], keep: float | int, layer: int = DEFAULT_LAYER
) -> PrunedLlmOutput:
    """One batched prefill in which layers ``layer`` onwards see only each sequence's top image tokens.

    The layers run one by one as ``PhiModel.forward`` runs them (same mask utility, rotary embedding and
    calls), so with nothing dropped (``keep=1.0``) the states are bit-identical to ``run_llm``'s. The ranking
    query is each sequence's last real token, FastV's ``[-1]`` row: the last one its key mask keeps. The
    release masks the final end-of-text like padding (its attention mask is ``input_ids != pad``, pad = eos),
    so in HyperSeg's template that is the last seg query.

    Args:
        llm: the Phi LLM (a ``torch.compile`` wrapper is unwrapped: the layers run eagerly here).
        sequences: assembled sequences, each with its image span.
        keep: image tokens to keep per sequence, a ratio of its span or a count (``pruning.budget``).
        layer: K, the first layer that sees only the kept tokens, ``1 <= K < num_layers``.

    Returns:
        The read-outs and each sequence's kept positions within its image span.

    Raises:
        ValueError: a bad ``layer`` or ``keep``.
    """
    llm = getattr(llm, "_orig_mod", llm)
    layers = llm.layers[: llm.config.num_hidden_layers]
    layer = check_layer(layer, len(layers))
    embeds, mask, positions = pad_sequences(sequences, 0)
    ranker = layers[layer - 1].self_attn
    with capture_attention_input(ranker) as captured:
        hidden = _run_layers(llm, layers[:layer], llm.embed_dropout(embeds), mask, positions)
    last = torch.stack([s.keep.nonzero().max() for s in sequences]).to(embeds.device)
    weights = last_row_attention(ranker, captured, mask.bool(), last)  # (B, L)
    kept, reduced = [], []
    for i, s in enumerate(sequences):
        order = weights[i, s.image].sort(descending=True, stable=True).indices  # ties: lowest index first
        chosen = order[: budget(keep, len(s.image))].sort().values
        kept.append(chosen)
        reduced.append(_drop(s, hidden[i, : len(s.embeds)], chosen))
    hidden, mask, positions = pad_sequences(reduced, 0)
    hidden = llm.final_layernorm(_run_layers(llm, layers[layer:], hidden, mask, positions))
    out = read_states(hidden, reduced)
    lengths = torch.tensor([len(s.embeds) for s in sequences])
    return PrunedLlmOutput(llm=dataclasses.replace(out, lengths=lengths), kept=kept)


def _run_layers(
    llm: PhiModel, layers, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Decoder layers over right-padded ``(B, L, hidden)`` states, with the mask and rotary ``PhiModel.forward``
    builds (no cache: a prefill whose keys are never reused)."""
    causal = create_causal_mask(
        config=llm.config, inputs_embeds=hidden, attention_mask=mask, cache=None, position_ids=positions
    )
    rotary = llm.rotary_emb(hidden, position_ids=positions)
    for decoder_layer in layers:
        hidden = decoder_layer(hidden, attention_mask=causal, position_ids=positions, position_embeddings=rotary)
    return hidden


def _drop(sequence: Assembled, hidden: torch.Tensor, chosen: torch.Tensor) -> Assembled:
    """The sequence as layer K sees it: ``hidden`` ``(L, hidden)`` without the unchosen image tokens.

    Kept tokens keep their position ids (FastV's in-place variant sets ``position_ids = keep_indexs``); the
    read-out spans move to their new places.
    """
    rows = torch.ones(len(hidden), dtype=torch.bool, device=hidden.device)
    rows[sequence.image] = False
    rows[sequence.image[chosen]] = True
    new_place = rows.cumsum(0) - 1
    return Assembled(
        embeds=hidden[rows],
        keep=sequence.keep[rows],
        positions=sequence.positions[rows],
        seg=new_place[sequence.seg],
        refer=new_place[sequence.refer],
        temporal=new_place[sequence.temporal],
        image=new_place[sequence.image[chosen]],
    )
