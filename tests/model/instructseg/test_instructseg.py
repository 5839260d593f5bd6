"""InstructSeg: every released key maps, the family is read from the checkpoint, pruning and short videos work."""

import numpy as np
import pytest
import torch

from pipeline.config import PruningConfig
from pipeline.model import HyperSegPredictor, InstructSeg, InstructSegPredictor, config_from_checkpoint, load, preset
from pipeline.model.instructseg.predictor import reference_frames, take
from pipeline.model.parts.checkpoint import map_weights, parameters_on_meta

from ..parts.test_checkpoint import released_meta_weights
from ..reference import REFERENCE

GOLDEN = REFERENCE / "golden-tiny-instructseg"


def test_instructseg_maps_every_released_key():
    weights = released_meta_weights("instructseg.state_dict.tsv")
    assert len(weights) == 1640
    with parameters_on_meta():
        model = InstructSeg(preset("instructseg"))
    state, unclaimed = map_weights(weights, model.routes(), model.dropped_prefixes)
    assert unclaimed == []
    model.load_released(weights)  # raises on any missing key, unexpected key or shape mismatch
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in model.state_dict().items()}
    # Dropped by name: the LM head, SigLIP's unused last layer and head, Swin's index buffers.
    used = {k for k in weights if not k.startswith("lm_head.")}
    assert len(weights) - len(used) == 1
    assert 3.4e9 < sum(t.numel() for t in weights.values()) < 3.5e9
    # The modules HyperSeg has too are the same classes, not copies.
    with parameters_on_meta():
        hyperseg = load.predictor_class(preset("hyperseg-3b")).model_class(preset("hyperseg-3b"))
    for name in ("vision", "projector", "llm", "swin", "pixel_decoder", "decoder"):
        assert type(getattr(model, name)) is type(getattr(hyperseg, name))
        assert str(getattr(model, name)) == str(getattr(hyperseg, name))


def test_golden_config_is_the_tiny_preset():
    assert config_from_checkpoint(GOLDEN / "checkpoint") == preset("instructseg-tiny")


def test_the_family_comes_from_the_checkpoint():
    assert type(load.from_pretrained(GOLDEN / "checkpoint")) is InstructSegPredictor
    assert type(load.from_pretrained(REFERENCE / "golden-tiny" / "checkpoint")) is HyperSegPredictor
    with pytest.raises(ValueError, match="holds a InstructSeg checkpoint, not a HyperSeg one"):
        HyperSegPredictor.from_pretrained(GOLDEN / "checkpoint")
    with pytest.raises(ValueError, match="not a InstructSeg preset"):
        InstructSegPredictor.from_preset("tiny")
    assert type(load.from_preset("instructseg-tiny")) is InstructSegPredictor


def test_an_unknown_architecture_is_refused(tmp_path):
    import json
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(GOLDEN / "checkpoint", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["LlavaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="name none or several"):
        config_from_checkpoint(folder)


@pytest.fixture(scope="module")
def predictor():
    return InstructSegPredictor.from_preset("instructseg-tiny", seed=0)


def frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(count)]


def run(predictor, pruning, images, texts=("the cat", "a dog on the left")):
    predictor.pruning = pruning
    try:
        return predictor.predict(images[0], list(texts))
    finally:
        predictor.pruning = PruningConfig()


def test_keep_one_equals_no_pruning_exactly(predictor):
    image = frames(1)
    base = run(predictor, PruningConfig(), image)
    for pruning in (PruningConfig("evtp", 1.0), PruningConfig("evtp", 1.0, references=True)):
        for a, b in zip(base, run(predictor, pruning, image), strict=True):
            assert a.query == b.query and a.score == b.score and np.array_equal(a.mask, b.mask)


def test_the_attention_baselines_at_keep_one_equal_no_pruning_exactly(predictor):
    image = frames(1, seed=5)
    predictor.share_prefix = False  # FastV runs whole sequences; compare like with like
    try:
        base = run(predictor, PruningConfig(), image)
        for pruning in (PruningConfig("fastv", 1.0, (("layer", 1),)), PruningConfig("visionzip", 1.0)):
            for a, b in zip(base, run(predictor, pruning, image), strict=True):
                assert a.query == b.query and a.score == b.score and np.array_equal(a.mask, b.mask)
        # Below 1.0, FastV keeps each expression's own tokens and leaves the input length as it was.
        pruned = run(predictor, PruningConfig("fastv", 0.2, (("layer", 1),)), image)
    finally:
        predictor.share_prefix = True
    assert [len(s.kept) for s in pruned] == [146, 146]
    assert [s.sequence_length for s in pruned] == [s.sequence_length for s in base]
    assert not np.array_equal(pruned[0].kept, pruned[1].kept)


def test_pruning_the_key_frame_shrinks_the_sequence_by_the_dropped_tokens(predictor):
    image = frames(1)
    full = run(predictor, PruningConfig(), image)
    pruned = run(predictor, PruningConfig("evtp", 0.2), image)
    k = round(0.2 * 729)
    assert [len(s.kept) for s in pruned] == [k, k]
    assert [a.sequence_length - b.sequence_length for a, b in zip(full, pruned, strict=True)] == [729 - k] * 2
    assert pruned[0].grid_radius > 0 and np.isfinite(pruned[0].feature_radius)


def test_pruning_the_references_changes_only_what_the_ovp_reads(predictor):
    video = frames(6)
    predictor.pruning = PruningConfig("evtp", 0.2)
    tokens = predictor.encode_tokens(video)
    with torch.inference_mode():
        assert predictor._references(tokens).shape[1] == 729
        predictor.pruning = PruningConfig("evtp", 0.2, references=True)
        assert torch.equal(predictor._references(tokens), tokens.image_tokens)
    pruned = predictor.predict_video(video, ["the cat"])
    predictor.pruning = PruningConfig("evtp", 0.2)
    kept_all = predictor.predict_video(video, ["the cat"])
    predictor.pruning = PruningConfig()
    # Same key-frame tokens and sequence length (the OVP gives 128 tokens per reference either way).
    assert [r[0].sequence_length for r in pruned] == [r[0].sequence_length for r in kept_all]
    assert all(np.array_equal(a[0].kept, b[0].kept) for a, b in zip(pruned, kept_all, strict=True))
    assert any(a[0].score != b[0].score for a, b in zip(pruned, kept_all, strict=True))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 7])
def test_a_video_of_any_length_equals_its_key_frames_one_by_one(predictor, length, monkeypatch):
    video = frames(length, seed=length)
    seen = []
    forward = predictor.model.vision.forward
    monkeypatch.setattr(predictor.model.vision, "forward", lambda x: seen.append(len(x)) or forward(x))
    results = predictor.predict_video(video, ["the cat"])
    assert sum(seen) == length  # SigLIP once per frame
    assert len(results) == length
    monkeypatch.undo()
    tokens = predictor.encode_tokens(video)
    for key in (0, length - 1):
        refs = reference_frames(key, length)
        with torch.inference_mode():
            references = predictor.model.projector(tokens.features[refs])[None]
        encoded = predictor.encode_key_frames([video[key]], take(tokens, [key]), references)
        ((expected,),), _ = predictor.segment(encoded, [["the cat"]], "video")
        (got,) = results[key]
        assert got.query == expected.query and np.array_equal(got.mask, expected.mask)
        assert got.score == pytest.approx(expected.score, abs=1e-6)


def test_sharing_the_system_prefix_changes_nothing_but_rounding(predictor):
    images = frames(2, seed=3)
    shared, _ = predictor.segment(predictor.encode(images), [["the cat", "a dog"], ["the sky"]], "referring")
    predictor.share_prefix = False
    try:
        alone, _ = predictor.segment(predictor.encode(images), [["the cat", "a dog"], ["the sky"]], "referring")
    finally:
        predictor.share_prefix = True
    for a, b in zip(sum(shared, []), sum(alone, []), strict=True):
        assert a.query == b.query and a.score == pytest.approx(b.score, abs=1e-5)
        assert a.sequence_length == b.sequence_length


def test_a_batch_of_images_equals_one_at_a_time(predictor):
    images = frames(3, seed=4)
    batched, _ = predictor.segment(predictor.encode(images), [["the cat"]] * 3, "referring")
    for image, (b,) in zip(images, batched, strict=True):
        (a,) = predictor.predict(image, ["the cat"])
        assert a.query == b.query and a.score == pytest.approx(b.score, abs=1e-5)


def test_bad_calls_are_refused(predictor):
    encoded = predictor.encode(frames(1))
    with pytest.raises(ValueError, match="carries no state"):
        predictor.prefill(encoded, [["the cat"]], "referring", temporal=torch.zeros(1, 128, 64))
    with pytest.raises(ValueError, match="non-empty expression list"):
        predictor.prefill(encoded, [[]], "referring")
    with pytest.raises(ValueError, match="at least one frame"):
        predictor.predict_video([], ["the cat"])
