"""VisionZip against its float64 loop reference: dominant top-d, stride targets, key-cosine assignment, merge."""

import numpy as np
import pytest
import torch

from pipeline.pruning import budget, coverage_radius, select_tokens

from . import reference as ref


def attention_inputs(features, seed=3, dk=6, levels=None):
    """Scores (with many exact ties when ``levels`` is given) and keys for each frame of ``features``."""
    generator = torch.Generator().manual_seed(seed)
    b, n, _ = features.shape
    scores = torch.rand(b, n, generator=generator)
    if levels is not None:
        scores = torch.randint(0, levels, (b, n), generator=generator).float()
    return scores, torch.randn(b, n, dk, generator=generator)


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.6, 20, 47])
@pytest.mark.parametrize("contextual", [10 / 64, 0.5, 1.0, 0.0])
@pytest.mark.parametrize("levels", [None, 3])
def test_equals_loop_reference(frames, keep, contextual, levels):
    features, grid = frames
    scores, keys = attention_inputs(features, levels=levels)
    sel = select_tokens(features, grid, keep, "visionzip", scores=scores, keys=keys, contextual=contextual)
    k = budget(keep, 48)
    assert sel.indices.shape == (3, k) and sel.features.shape == (3, k, 10)
    for i in range(3):
        kept, merged = ref.visionzip(features[i].numpy(), scores[i].tolist(), keys[i].numpy(), k, contextual)
        assert sel.indices[i].tolist() == kept
        np.testing.assert_allclose(sel.features[i].numpy(), merged, rtol=1e-5, atol=1e-6)


def test_dominant_ties_go_to_the_lowest_index(frames):
    features, grid = frames
    scores, keys = attention_inputs(features)
    scores[:] = 1.0  # every score tied: the dominant tokens are the first ones
    sel = select_tokens(features, grid, 16, "visionzip", scores=scores, keys=keys, contextual=0.0)
    assert torch.equal(sel.indices, torch.arange(16).expand(3, 16))
    torch.testing.assert_close(sel.features, features[:, :16], rtol=0, atol=0)  # dominant tokens are not merged


def test_merge_is_target_plus_the_mean_of_its_members():
    """Four tokens, one dominant, one target: the target absorbs the other two."""
    features = torch.tensor([[[1.0, 0.0], [10.0, 0.0], [0.0, 2.0], [0.0, 4.0]]])
    scores = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    keys = torch.ones(1, 4, 3)
    sel = select_tokens(features, (2, 2), 2, "visionzip", scores=scores, keys=keys, contextual=0.5)
    assert sel.indices.tolist() == [[0, 1]]  # dominant 1; the stride's first target is token 0
    torch.testing.assert_close(sel.features, torch.tensor([[[1.0, 3.0], [10.0, 0.0]]]))


def test_keep_one_is_no_pruning_and_coverage_is_on_the_input_features(frames):
    features, grid = frames
    scores, keys = attention_inputs(features)
    full = select_tokens(features, grid, 1.0, "visionzip", scores=scores, keys=keys)
    assert torch.equal(full.indices, torch.arange(48).expand(3, 48)) and full.features is None
    sel = select_tokens(features, grid, 0.25, "visionzip", scores=scores, keys=keys)
    cover = coverage_radius(features, sel.indices, grid)
    torch.testing.assert_close(sel.feature_radius, cover.feature, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sel.grid_radius, cover.grid)
    assert torch.isnan(sel.lam).all()


def test_bad_inputs(frames):
    features, grid = frames
    scores, keys = attention_inputs(features)
    with pytest.raises(ValueError, match="visionzip needs scores and keys"):
        select_tokens(features, grid, 0.2, "visionzip")
    with pytest.raises(ValueError, match="visionzip needs keys"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores)
    with pytest.raises(ValueError, match=r"scores must be a \(batch=3, N=48\) tensor, got \(3, 47\)"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores[:, :47], keys=keys)
    with pytest.raises(ValueError, match=r"keys must be a \(batch=3, N=48, dk\) tensor, got \(3, 48\)"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores, keys=keys[..., 0])
    with pytest.raises(ValueError, match="keys must be floating point"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores, keys=keys.long())
    bad = keys.clone()
    bad[2, 5, 0] = float("inf")
    with pytest.raises(ValueError, match=r"keys contain NaN or Inf in batch row\(s\) \[2\]"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores, keys=bad)
    with pytest.raises(ValueError, match="contextual must be a share in"):
        select_tokens(features, grid, 0.2, "visionzip", scores=scores, keys=keys, contextual=1.5)
