"""FastV and VisionZip in the model: recomputed attention rows equal eager attention, and pruning equals references.

A tiny HyperSeg with a 3-layer LLM (so FastV's K = 1 and the default K = 2 both leave layers after K), seeded
random weights and random seg queries (zeros would give the ranking query a zero input at layer 0, and every
image token the same weight).
"""

import dataclasses
import tempfile

import numpy as np
import pytest
import torch

from pipeline.model import HyperSeg, HyperSegPredictor, PruningConfig, preset
from pipeline.model.parts.llm import assemble, pad_sequences, read_states, run_llm
from pipeline.model.parts.preprocess import siglip_view
from pipeline.model.parts.prompt import build_tiny_tokenizer, format_instruction, load_tokenizer, refer_ids
from pipeline.model.token_pruning.attention_rows import (
    capture_attention_input,
    last_row_attention,
    received_attention,
)
from pipeline.model.token_pruning.fastv import run_llm_fastv
from pipeline.model.token_pruning.token_selection import run_vision
from pipeline.pruning import budget, coverage_radius

from ...pruning import reference as ref

TEXTS = ["the cat", "a small dog sitting on the left of the picture"]


def build(attn_implementation: str) -> HyperSegPredictor:
    config = preset("tiny")
    config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, num_layers=3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HyperSeg(config, attn_implementation)
        model.seg_query.data.normal_()
    with tempfile.TemporaryDirectory() as directory:
        return HyperSegPredictor(model, load_tokenizer(build_tiny_tokenizer(directory)))


@pytest.fixture(scope="module")
def predictor():
    return build("sdpa")


@pytest.fixture(scope="module")
def eager():
    return build("eager")


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)


def pixels(predictor, image):
    pre = predictor.model.config.preprocess
    return siglip_view(image, pre.siglip_size, pre.siglip_mean, pre.siglip_std)[None]


def sequences(predictor, texts=TEXTS, seed=0):
    """Assembled referring prompts around random image (729) and temporal (8) tokens, one per text."""
    model, generator = predictor.model, torch.Generator().manual_seed(seed)
    hidden = model.config.llm.hidden_size
    image, temporal = torch.randn(729, hidden, generator=generator), torch.randn(8, hidden, generator=generator)
    return [
        assemble(
            predictor.prompt_ids("referring"),
            model.llm.embed_tokens,
            image=image,
            temporal=temporal,
            refer_ids=refer_ids(predictor.tokenizer, format_instruction("referring", text)),
            seg_query=model.seg_query,
            pad_token_id=predictor.pad_token_id,
        )
        for text in texts
    ]


def eager_attentions(eager, seqs):
    """Every layer's ``(B, H, L, L)`` eager attention weights of the padded batch."""
    embeds, mask, positions = pad_sequences(seqs, 0)
    return eager.model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_attentions=True)


def last_real(seqs):
    return torch.stack([s.keep.nonzero().max() for s in seqs])


@torch.inference_mode()
def test_siglip_received_attention_equals_eager_weights(predictor, eager, image):
    x = pixels(predictor, image)
    out = run_vision(predictor.model.vision, x, "visionzip")
    assert torch.equal(out.features, predictor.model.vision(x))  # the hook changes nothing
    attention, seen = eager.model.vision.encoder.layers[-1].self_attn, {}
    handles = [
        attention.register_forward_hook(lambda m, a, o: seen.update(weights=o[1])),
        attention.k_proj.register_forward_hook(lambda m, a, o: seen.update(keys=o)),
    ]
    try:
        eager.model.vision(x)
    finally:
        for handle in handles:
            handle.remove()
    b, h, n, _ = seen["weights"].shape
    assert (b, h, n) == (1, 4, 729)
    torch.testing.assert_close(out.attention.scores, seen["weights"].mean(dim=(1, 2)), rtol=1e-5, atol=1e-6)
    keys = seen["keys"].view(b, n, h, -1).mean(dim=2)
    torch.testing.assert_close(out.attention.keys, keys, rtol=1e-5, atol=1e-6)


@torch.inference_mode()
def test_received_attention_never_builds_an_n_by_n_map(predictor, image, monkeypatch):
    attention = predictor.model.vision.encoder.layers[-1].self_attn
    with capture_attention_input(attention) as captured:
        predictor.model.vision(pixels(predictor, image))
    whole = received_attention(attention, captured.hidden_states, block=729)
    shapes, softmax = [], torch.softmax
    monkeypatch.setattr(torch, "softmax", lambda x, *a, **k: shapes.append(tuple(x.shape)) or softmax(x, *a, **k))
    small = received_attention(attention, captured.hidden_states, block=100)
    assert shapes and max(shapes) == (1, 4, 100, 729) and shapes[-1] == (1, 4, 29, 729)
    torch.testing.assert_close(small.scores, whole.scores, rtol=1e-6, atol=1e-9)
    assert torch.equal(small.keys, whole.keys)


@torch.inference_mode()
def test_phi_last_row_equals_eager_weights(predictor, eager):
    seqs = sequences(predictor)  # two lengths: the shorter one is right-padded
    reference = eager_attentions(eager, seqs).attentions
    embeds, mask, positions = pad_sequences(seqs, 0)
    assert not mask.bool().all()
    lengths = torch.tensor([len(s.embeds) for s in seqs])
    for index, layer in enumerate(predictor.model.llm.layers):
        with capture_attention_input(layer.self_attn) as captured:
            predictor.model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        for query in (last_real(seqs), torch.tensor([100, 700]), lengths - 1):
            rows = last_row_attention(layer.self_attn, captured, mask.bool(), query)
            expected = reference[index][torch.arange(2), :, query].mean(dim=1)  # (B, L)
            torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-6)
            assert torch.all(rows[~mask.bool()] == 0) and torch.allclose(rows.sum(1), torch.ones(2))


@pytest.mark.parametrize("layer", [1, 2])
@torch.inference_mode()
def test_fastv_keep_one_is_bit_identical_to_run_llm(predictor, layer):
    seqs = sequences(predictor)
    full = run_llm(predictor.model.llm, seqs)
    out = run_llm_fastv(predictor.model.llm, seqs, 1.0, layer=layer)
    for name in ("seg", "refer", "temporal", "lengths"):
        assert torch.equal(getattr(out.llm, name), getattr(full, name)), name
    assert all(torch.equal(k, torch.arange(729)) for k in out.kept)


def masked_reference(llm, seqs, kept, layer):
    """FastV's attention-mask variant: every token stays, layers >= K just cannot attend to the dropped ones."""
    embeds, mask, positions = pad_sequences(seqs, 0)
    pruned = mask.bool().clone()
    for i, s in enumerate(seqs):
        pruned[i, s.image] = False
        pruned[i, s.image[kept[i]]] = True
    causal = torch.ones(embeds.shape[1], embeds.shape[1], dtype=torch.bool).tril()
    masks = [causal & mask.bool()[:, None, None, :], causal & pruned[:, None, None, :]]
    rotary, hidden = llm.rotary_emb(embeds, position_ids=positions), embeds
    for index, decoder_layer in enumerate(llm.layers):
        hidden = decoder_layer(
            hidden, attention_mask=masks[index >= layer], position_ids=positions, position_embeddings=rotary
        )
    return read_states(llm.final_layernorm(hidden), seqs)


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("keep", [0.2, 50])
@torch.inference_mode()
def test_fastv_keeps_the_top_tokens_of_layer_k_minus_1_and_drops_the_rest(predictor, eager, layer, keep):
    seqs = sequences(predictor)
    llm = predictor.model.llm
    lengths = {}
    handles = [
        llm.layers[i].register_forward_pre_hook(lambda m, a, i=i: lengths.update({i: a[0].shape[1]})) for i in range(3)
    ]
    try:
        out = run_llm_fastv(llm, seqs, keep, layer=layer)
    finally:
        for handle in handles:
            handle.remove()
    k = budget(keep, 729)
    # Brute force: eager weights of layer K-1, last real row, mean over heads, top-k over the image span.
    weights = eager_attentions(eager, seqs).attentions[layer - 1]
    for i, (s, q) in enumerate(zip(seqs, last_real(seqs), strict=True)):
        row = weights[i, :, q, s.image].mean(dim=0)
        assert out.kept[i].tolist() == ref.top_k(row.tolist(), k)
    widest = max(len(s.embeds) for s in seqs)
    assert lengths == {i: widest if i < layer else widest - (729 - k) for i in range(3)}
    assert out.llm.lengths.tolist() == [len(s.embeds) for s in seqs]  # the input lengths
    expected = masked_reference(llm, seqs, out.kept, layer)
    for name in ("seg", "refer", "temporal"):
        torch.testing.assert_close(getattr(out.llm, name), getattr(expected, name), rtol=1e-4, atol=1e-5)
    if layer == 2:  # from layer 1 on the ranking query has read the instruction: FastV is text-conditioned
        assert out.kept[0].tolist() != out.kept[1].tolist()


@pytest.mark.parametrize("layer", [0, 3, True, 1.5])
def test_fastv_layer_must_leave_layers_on_both_sides(predictor, layer):
    with pytest.raises(ValueError, match=r"fastv layer must be an int in \[1, 2\] for a 3-layer LLM"):
        run_llm_fastv(predictor.model.llm, sequences(predictor)[:1], 0.2, layer=layer)


def segment(predictor, image, pruning, share_prefix=True):
    predictor.pruning, predictor.share_prefix = pruning, share_prefix
    try:
        return predictor.predict(image, TEXTS)
    finally:
        predictor.pruning, predictor.share_prefix = PruningConfig(), True


@pytest.fixture(scope="module")
def unpruned(predictor, image):
    """Method ``none``, with and without the shared prefix."""
    return {share: segment(predictor, image, PruningConfig(), share_prefix=share) for share in (False, True)}


@pytest.mark.parametrize(
    ("pruning", "share"),
    [
        (PruningConfig("fastv", 1.0), False),
        (PruningConfig("visionzip", 1.0), False),
        (PruningConfig("visionzip", 1.0), True),
    ],
)
def test_keep_one_is_bit_identical_to_no_pruning(predictor, image, unpruned, pruning, share):
    for a, b in zip(unpruned[share], segment(predictor, image, pruning, share_prefix=share), strict=True):
        assert (a.query, a.score, a.sequence_length) == (b.query, b.score, b.sequence_length)
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.kept, b.kept)


@torch.inference_mode()
def test_fastv_selections_are_per_expression(predictor, image, unpruned):
    results = segment(predictor, image, PruningConfig("fastv", 0.2))
    features = predictor.model.vision(pixels(predictor, image))
    for a, b in zip(unpruned[True], results, strict=True):
        assert len(b.kept) == 146 and np.all(np.diff(b.kept) > 0)
        assert b.sequence_length == a.sequence_length  # FastV drops inside the LLM: the input is whole
        cover = coverage_radius(features, torch.from_numpy(b.kept)[None], predictor.model.grid)
        assert b.feature_radius == pytest.approx(float(cover.feature[0]), rel=1e-5)
        assert b.grid_radius == float(cover.grid[0]) and np.isnan(b.lam)
    assert not np.array_equal(results[0].kept, results[1].kept)


def test_fastv_video_carries_the_state_per_expression(predictor, image):
    predictor.pruning = PruningConfig("fastv", 0.2)
    try:
        video = predictor.predict_video([image, np.ascontiguousarray(image[::-1])], TEXTS[:1])
    finally:
        predictor.pruning = PruningConfig()
    assert [[len(s.kept) for s in frame] for frame in video] == [[146], [146]]
    assert video[0][0].score != video[1][0].score


@torch.inference_mode()
def test_visionzip_in_the_predictor_feeds_the_merged_tokens(predictor, image, unpruned):
    predictor.pruning = PruningConfig("visionzip", 0.2)
    try:
        encoded = predictor.encode([image])
        results = predictor.segment(encoded, [TEXTS])[0][0]
    finally:
        predictor.pruning = PruningConfig()
    selection = encoded.selection
    assert selection.k == 146 and selection.features.shape == (1, 146, 32)
    torch.testing.assert_close(encoded.image_tokens, predictor.model.projector(selection.features))
    assert unpruned[True][0].sequence_length - results[0].sequence_length == 729 - 146
    assert np.array_equal(results[0].kept, selection.indices[0].numpy()) and np.isnan(results[0].lam)
