"""Token pruning inside the model, batching, video state and bad input, on the tiny preset (random weights)."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.model import HyperSegPredictor, PruningConfig
from pipeline.model.hyperseg.predictor import STAGES
from pipeline.model.parts.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def predictor():
    return HyperSegPredictor.from_preset("tiny", seed=0)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [(rng.random(shape) * 255).astype(np.uint8) for shape in ((90, 120, 3), (64, 48, 3))]


def run(predictor, pruning, image, expressions, task="referring"):
    predictor.pruning = pruning
    try:
        return predictor.predict(image, expressions, task)
    finally:
        predictor.pruning = PruningConfig()


def same(a, b):
    assert (a.query, a.score) == (b.query, b.score)
    assert np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize("method", ["evtp", "kcenter", "grid", "random", "divprune"])
def test_keep_one_is_bit_identical_to_no_pruning(predictor, images, method):
    unpruned = run(predictor, PruningConfig(), images[0], ["the cat"])[0]
    full = run(predictor, PruningConfig(method, 1.0), images[0], ["the cat"])[0]
    same(unpruned, full)
    assert full.sequence_length == unpruned.sequence_length


@pytest.mark.parametrize(("keep", "k"), [(0.2, 146), (0.05, 36), (73, 73)])
def test_sequence_shrinks_by_exactly_the_pruned_tokens(predictor, images, keep, k):
    unpruned = run(predictor, PruningConfig(), images[0], ["the cat"])[0]
    pruned = run(predictor, PruningConfig("evtp", keep), images[0], ["the cat"])[0]
    assert len(pruned.kept) == k and np.all(np.diff(pruned.kept) > 0)
    assert unpruned.sequence_length - pruned.sequence_length == 729 - k
    assert pruned.mask.shape == (90, 120)
    assert pruned.lam > 0 and pruned.grid_radius > 0 and np.isnan(unpruned.lam)


def test_position_id_policies(predictor, images):
    contiguous = run(predictor, PruningConfig("evtp", 0.2), images[0], ["the cat"])[0]
    original = run(predictor, PruningConfig("evtp", 0.2, position_ids="original"), images[0], ["the cat"])[0]
    assert np.array_equal(contiguous.kept, original.kept)
    assert contiguous.score != original.score  # gapped positions change the LLM's output
    unpruned = run(predictor, PruningConfig(), images[0], ["the cat"])[0]
    same(unpruned, run(predictor, PruningConfig("evtp", 1.0, position_ids="original"), images[0], ["the cat"])[0])


def test_expressions_and_frames_batch_like_single_calls(predictor, images):
    """Right-padding the shorter sequences must not change any result."""
    expressions = [["a", "the small dog sitting on the left of the picture"], ["cat"]]
    predictor.pruning = PruningConfig("evtp", 0.2)
    try:
        batched, _ = predictor.segment(predictor.encode(images), expressions)
        for frame, image in enumerate(images):
            for e, text in enumerate(expressions[frame]):
                single = predictor.predict(image, [text])[0]
                assert batched[frame][e].query == single.query
                assert batched[frame][e].score == pytest.approx(single.score, abs=1e-5)
                assert np.mean(batched[frame][e].mask != single.mask) < 1e-3
                assert np.array_equal(batched[frame][e].kept, single.kept)
        assert batched[1][0].mask.shape == (64, 48)
    finally:
        predictor.pruning = PruningConfig()


def test_video_equals_single_frame_calls_with_the_state_carried(predictor, images):
    frames = [images[0], np.ascontiguousarray(images[0][::-1]), images[0]]
    video = predictor.predict_video(frames, ["the cat", "a dog"])
    state = None
    for t, frame in enumerate(frames):
        results, state = predictor.segment(predictor.encode([frame]), [["the cat", "a dog"]], "video", state)
        for a, b in zip(results[0], video[t], strict=True):
            same(a, b)
    # The carried state matters: frame 2 repeats frame 0 but starts from a different state.
    assert video[2][0].score != video[0][0].score


def test_stage_timings_are_reported(predictor, images):
    result = predictor.predict(images[0], ["the cat"])[0]
    assert tuple(result.seconds) == STAGES
    assert all(v >= 0 for v in result.seconds.values())


def test_runs_in_bfloat16(images):
    low = HyperSegPredictor.from_preset("tiny", seed=0)
    low.model.to(torch.bfloat16)
    result = low.predict(images[0], ["the cat"])[0]
    assert result.mask.shape == (90, 120) and 0 <= result.score <= 1


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), dtype=np.uint8), r"\(height, width, 3\) RGB, got shape \(10, 10\)"),
        (np.zeros((10, 10, 4), dtype=np.uint8), r"\(height, width, 3\) RGB, got shape \(10, 10, 4\)"),
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
    ],
)
def test_bad_images(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(image, ["the cat"])


def test_bad_expressions(predictor, images):
    with pytest.raises(ValueError, match="non-empty expression list"):
        predictor.predict(images[0], [])
    with pytest.raises(ValueError, match="must not be empty"):
        predictor.predict(images[0], ["   "])
    with pytest.raises(ValueError, match="unknown task"):
        predictor.predict(images[0], ["the cat"], task="caption")
    with pytest.raises(ValueError, match="needs at least one frame"):
        predictor.encode([])
    with pytest.raises(ValueError, match="position_ids"):
        dataclasses.replace(PruningConfig(), position_ids="shifted")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        HyperSegPredictor.from_pretrained(tmp_path)


def logits(predictor, frames, expressions, task, share):
    """Per frame (state carried as predict_video does): the decoder's mask and SEG logits for every expression."""
    predictor.share_prefix = share
    try:
        state, out = None, []
        for frame in frames:
            encoded = predictor.encode([frame])
            prefill = predictor.prefill(encoded, [expressions], task, state)
            decoded = predictor.decode(encoded, prefill)
            out.append((decoded.pred_masks, decoded.pred_seg_logits, prefill.llm.lengths))
            state = prefill.next_temporal if task == "video" else None
        return out
    finally:
        predictor.share_prefix = True


@pytest.mark.parametrize("keep", [1.0, 0.2])
@pytest.mark.parametrize("position_ids", ["contiguous", "original"])
@pytest.mark.parametrize("task", ["referring", "video"])
def test_shared_prefix_equals_one_expression_at_a_time(predictor, images, keep, position_ids, task):
    """The prefix computed once per frame (cached keys and values) gives each expression's full-sequence result."""
    frames = [images[0], np.ascontiguousarray(images[0][::-1])] if task == "video" else [images[0]]
    expressions = ["a", "the small dog sitting on the left of the picture", "cat"]
    predictor.pruning = PruningConfig("evtp", keep, position_ids=position_ids)
    try:
        shared = logits(predictor, frames, expressions, task, share=True)
        alone = [
            [logits(predictor, frames, [text], task, share=False)[t] for text in expressions]
            for t in range(len(frames))
        ]
    finally:
        predictor.pruning = PruningConfig()
    for t, (masks, seg_logits, lengths) in enumerate(shared):
        for e in range(len(expressions)):
            one_masks, one_seg, one_length = alone[t][e]
            torch.testing.assert_close(masks[e], one_masks[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(seg_logits[e], one_seg[0], atol=1e-4, rtol=0)
            assert lengths[e] == one_length[0]


def test_shared_prefix_gives_the_same_segmentations(predictor, images):
    predictor.pruning = PruningConfig("evtp", 0.2)
    try:
        shared = predictor.predict_video([images[0], images[0][::-1]], ["the cat", "a dog on the left"])
        predictor.share_prefix = False
        unshared = predictor.predict_video([images[0], images[0][::-1]], ["the cat", "a dog on the left"])
    finally:
        predictor.pruning, predictor.share_prefix = PruningConfig(), True
    for a_frame, b_frame in zip(shared, unshared, strict=True):
        for a, b in zip(a_frame, b_frame, strict=True):
            assert a.query == b.query and a.score == pytest.approx(b.score, abs=1e-5)
            assert np.mean(a.mask != b.mask) < 1e-3


def test_states_that_differ_per_expression_are_not_shared(predictor, images):
    """A caller's own per-expression states: the prefix then ends before <temporal>, computed per expression."""
    encoded = predictor.encode([images[0]])
    first = predictor.prefill(encoded, [["the cat", "a dog"]], "video")
    state = first.next_temporal.clone()
    assert torch.equal(state[0], state[1])  # what a video carries: one state per frame
    state[1] = torch.randn(state[1].shape, generator=torch.Generator().manual_seed(0))  # not a shift: FVP normalises
    outputs = []
    for share in (True, False):
        predictor.share_prefix = share
        try:
            prefill = predictor.prefill(encoded, [["the cat", "a dog"]], "video", state)
            outputs.append(predictor.decode(encoded, prefill))
        finally:
            predictor.share_prefix = True
    torch.testing.assert_close(outputs[0].pred_masks, outputs[1].pred_masks, atol=1e-4, rtol=0)
    assert not torch.allclose(outputs[0].pred_masks[0], outputs[0].pred_masks[1], atol=1e-3)


def test_compiled_predictor_gives_the_eager_results(images, tmp_path):
    """``compile()`` wraps SigLIP and the LLM in torch.compile; masks and scores stay the eager ones. A smaller
    tiny (1 LLM layer, 2 SigLIP layers) keeps the compilation to about half a minute on 2 cores."""
    from pipeline.model import HyperSeg, preset
    from pipeline.model.parts.prompt import build_tiny_tokenizer, load_tokenizer

    config = preset("tiny")
    config = dataclasses.replace(
        config,
        llm=dataclasses.replace(config.llm, num_layers=1),
        vision=dataclasses.replace(config.vision, num_layers=2),
    )
    torch.manual_seed(0)
    predictor = HyperSegPredictor(HyperSeg(config), load_tokenizer(build_tiny_tokenizer(tmp_path)))
    predictor.pruning = PruningConfig("evtp", 0.2)
    eager = predictor.predict(images[0], ["the cat", "a dog on the left"])
    predictor.compile()
    assert isinstance(predictor.model.llm, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(predictor.model.vision, torch._dynamo.eval_frame.OptimizedModule)
    compiled = predictor.predict(images[0], ["the cat", "a dog on the left"])
    for a, b in zip(eager, compiled, strict=True):
        assert a.query == b.query and a.score == pytest.approx(b.score, abs=1e-5)
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.kept, b.kept)


def text_rows(sequence) -> torch.Tensor:
    """``(L,)`` bool: the rows of an assembled sequence that are not visual tokens."""
    rows = torch.ones(len(sequence.embeds), dtype=torch.bool)
    rows[sequence.image] = False
    return rows


@pytest.mark.parametrize("position_ids", ["contiguous", "original"])
@pytest.mark.parametrize("task", ["referring", "video"])
def test_pruning_is_deleting_the_dropped_tokens_from_the_unpruned_sequence(
    predictor, images, position_ids, task, monkeypatch
):
    # The oracle for the whole pruning path (selection -> gather -> projector -> sequence): the pruned LLM input is
    # the unpruned one with the dropped visual rows removed. A gather of the wrong tokens, kept tokens out of raster
    # order or misplaced position ids all break it, also where keep 1.0 (the golden runs) cannot see them.
    from pipeline.model.hyperseg import predictor as predictor_module

    seen = []
    shared = predictor_module.run_llm_shared

    def capture(llm, sequences, *args, **options):
        seen.append(sequences[0])
        return shared(llm, sequences, *args, **options)

    monkeypatch.setattr(predictor_module, "run_llm_shared", capture)
    pruned_result = run(predictor, PruningConfig("evtp", 0.2, position_ids=position_ids), images[0], ["the cat"], task)
    run(predictor, PruningConfig("none", 1.0, position_ids=position_ids), images[0], ["the cat"], task)
    pruned, full = seen
    kept = torch.as_tensor(pruned_result[0].kept)
    assert len(kept) == 146 and len(full.image) == 729
    # Visual rows: the projector ran on 146 rows instead of 729, which may round differently on other BLAS.
    assert torch.allclose(pruned.embeds[pruned.image], full.embeds[full.image][kept], atol=1e-6)
    dropped = torch.ones(729, dtype=torch.bool).index_fill_(0, kept, False)
    rest = torch.ones(len(full.embeds), dtype=torch.bool)
    rest[full.image[dropped]] = False  # the unpruned sequence without the dropped rows
    assert torch.equal(pruned.embeds[text_rows(pruned)], full.embeds[text_rows(full)])  # template, FVP, words
    assert torch.equal(pruned.image, full.image[0] + torch.arange(len(kept)))  # one block where the image starts
    for name in ("seg", "refer", "temporal"):  # the spans sit where the unpruned ones do, less the dropped rows
        assert torch.equal(getattr(pruned, name) + len(full.embeds) - len(pruned.embeds), getattr(full, name))
    assert torch.equal(pruned.keep, full.keep[rest])
    if position_ids == "original":  # every kept token and all text keep their unpruned positions
        assert torch.equal(pruned.positions, full.positions[rest])
    else:
        assert torch.equal(pruned.positions, torch.arange(len(pruned.embeds)))
