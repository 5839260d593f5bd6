"""Every bad input raises a ValueError that names the problem."""

import pytest
import torch

from pipeline.pruning import budget, coverage_radius, select_tokens


@pytest.mark.parametrize(
    ("ratio", "k"), [(0.05, 36), (0.1, 73), (0.2, 146), (0.5, 364), (1.0, 729), (1e-6, 1), (146, 146), (1, 1)]
)
def test_budget_rounds_half_to_even(ratio, k):
    assert budget(ratio, 729) == k


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (0.0, r"ratio must be in \(0, 1\], got 0.0"),
        (-0.2, r"ratio must be in \(0, 1\], got -0.2"),
        (1.5, r"ratio must be in \(0, 1\], got 1.5"),
        (float("nan"), r"ratio must be in \(0, 1\], got nan"),
        (0, r"count must be in \[1, 48\], got 0"),
        (49, r"count must be in \[1, 48\], got 49"),
        (True, "ratio in"),
        ("0.2", "ratio in"),
    ],
)
def test_bad_keep(keep, message, frames):
    features, grid = frames
    with pytest.raises(ValueError, match=message):
        select_tokens(features, grid, keep)


def test_grid_must_match_tokens(frames):
    features, _ = frames
    with pytest.raises(ValueError, match="grid 7x7 holds 49 tokens but features have N=48"):
        select_tokens(features, (7, 7), 0.2)
    with pytest.raises(ValueError, match="positive integers"):
        select_tokens(features, (6.0, 8), 0.2)
    with pytest.raises(ValueError, match=r"grid must be \(h, w\)"):
        select_tokens(features, 48, 0.2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_rows_are_named(bad, frames):
    features, grid = frames
    features = features.clone()
    features[2, 5, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf in batch row\(s\) 2$"):
        select_tokens(features, grid, 0.2)
    features[0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"row\(s\) 0, 2$"):
        select_tokens(features, grid, 0.2, "grid")


def test_large_finite_values_are_not_mistaken_for_inf():
    features = torch.full((1, 4, 3), 3e38)  # the sum overflows; every value is finite
    assert select_tokens(features, (2, 2), 2).k == 2


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (torch.zeros(0, 48, 10), "empty batch"),
        (torch.zeros(48, 10), "rank 3 .* got rank 2"),
        (torch.zeros(1, 3, 48, 10), "rank 3 .* got rank 4"),
        (torch.zeros(2, 0, 10), "no tokens"),
        (torch.zeros(2, 48, 10, dtype=torch.int64), "floating-point .* torch.int64"),
        ([[0.0] * 10] * 48, "torch.Tensor"),
    ],
)
def test_bad_features(features, message):
    with pytest.raises(ValueError, match=message):
        select_tokens(features, (6, 8), 0.2)


def test_bad_method_and_options(frames):
    features, grid = frames
    with pytest.raises(ValueError, match="unknown selection method 'sparsevlm'"):
        select_tokens(features, grid, 0.2, "sparsevlm")
    with pytest.raises(ValueError, match="alpha must be .* got -1"):
        select_tokens(features, grid, 0.2, alpha=-1.0)
    with pytest.raises(ValueError, match="lam must be .* got nan"):
        select_tokens(features, grid, 0.2, lam=float("nan"))
    with pytest.raises(ValueError, match="first-centre rule 'centre'"):
        select_tokens(features, grid, 0.2, first="centre")
    with pytest.raises(TypeError, match="alpha"):
        select_tokens(features, grid, 0.2, "grid", alpha=1.0)
    with pytest.raises(TypeError, match="scores"):
        select_tokens(features, grid, 0.2, "attention")
    with pytest.raises(ValueError, match=r"scores must be a \(batch=3, N=48\) tensor, got \(3, 47\)"):
        select_tokens(features, grid, 0.2, "attention", scores=torch.zeros(3, 47))
    scores = torch.zeros(3, 48)
    scores[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"scores contain NaN or Inf in batch row\(s\) \[1\]"):
        select_tokens(features, grid, 0.2, "attention", scores=scores)


def test_coverage_radius_checks_indices(frames):
    features, grid = frames
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 48\), got range \[0, 48\]"):
        coverage_radius(features, torch.tensor([[0, 48]] * 3), grid)
    with pytest.raises(ValueError, match=r"indices must be \(batch=3, K>0\)"):
        coverage_radius(features, torch.tensor([[0, 1]]), grid)
