"""Properties of EVTP that follow from its definition (pruning.md §1.4, §1.5)."""

import math

import pytest
import torch

from pipeline.pruning import select_tokens
from pipeline.pruning.evtp import adaptive_lambda
from pipeline.pruning.geometry import center_normalize


def test_lam_zero_equals_kcenter(frames):
    features, grid = frames
    for keep in (0.1, 0.3, 0.7):
        evtp = select_tokens(features, grid, keep, "evtp", lam=0.0)
        kcenter = select_tokens(features, grid, keep, "kcenter")
        assert torch.equal(evtp.indices, kcenter.indices)
        assert torch.equal(evtp.feature_radius, kcenter.feature_radius)
    assert torch.equal(
        select_tokens(features, grid, 0.3, alpha=0.0).indices, select_tokens(features, grid, 0.3, "kcenter").indices
    )


def test_spatial_term_changes_the_selection(frames):
    features, grid = frames
    evtp = select_tokens(features, grid, 0.25)
    kcenter = select_tokens(features, grid, 0.25, "kcenter")
    assert not torch.equal(evtp.indices, kcenter.indices)
    # Trading feature coverage for spatial coverage, on average over the frames.
    assert evtp.grid_radius.mean() <= kcenter.grid_radius.mean()


def test_adaptive_lambda_on_the_27x27_grid():
    # T_P = 2 (n+1) / (12 (n-1)) = 56/312 for n = 27; unit vectors with zero mean have T_X = 1.
    x = torch.zeros(1, 729, 729)
    x[0] = torch.eye(729) - 1.0 / 729  # centred one-hot tokens
    x = center_normalize(x)
    t_x = 1.0 - float(x.mean(1).square().sum())
    expected = math.sqrt(t_x / (56 / 312))
    assert math.isclose(float(adaptive_lambda(x, (27, 27))), expected, rel_tol=1e-5)
    assert math.isclose(float(adaptive_lambda(x, (27, 27), alpha=2.0)), 2 * expected, rel_tol=1e-5)
    assert math.isclose(expected, 2.36039, rel_tol=1e-5)


def test_lambda_edge_cases():
    constant = torch.ones(2, 12, 5)
    assert torch.equal(select_tokens(constant, (3, 4), 0.5, alpha=1.5).lam, torch.full((2,), 1.5))
    # A 1x1 grid has no spatial spread: λ = 0.
    assert float(adaptive_lambda(center_normalize(torch.randn(1, 1, 4)), (1, 1))) == 0.0
    fixed = select_tokens(torch.randn(2, 12, 5), (3, 4), 0.5, lam=0.7)
    assert torch.allclose(fixed.lam, torch.full((2,), 0.7))


def test_invariant_to_positive_scale_and_shift(frames):
    features, grid = frames
    base = select_tokens(features, grid, 0.3)
    shifted = select_tokens(3.0 * features + torch.randn(10), grid, 0.3)
    assert torch.equal(base.indices, shifted.indices)
    torch.testing.assert_close(base.lam, shifted.lam)


def test_selections_are_nested(frames):
    features, grid = frames
    small = select_tokens(features, grid, 5).indices
    large = select_tokens(features, grid, 20).indices
    for few, many in zip(small.tolist(), large.tolist(), strict=True):
        assert set(few) <= set(many)


def test_constant_frame_is_covered_spatially():
    """All tokens equal: EVTP falls back to farthest-first over the grid; plain k-center keeps the top rows."""
    constant = torch.full((2, 729, 16), 0.3)
    for keep in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8):
        evtp = select_tokens(constant, (27, 27), keep)
        grid = select_tokens(constant, (27, 27), keep, "grid")
        kcenter = select_tokens(constant, (27, 27), keep, "kcenter")
        assert evtp.indices[0, 0] == 0, "every token is equally isolated: the tie goes to token 0"
        assert torch.equal(evtp.indices[0], evtp.indices[1])
        # Greedy k-center is a 2-approximation, so it is within 2x of any K-subset, the lattice included.
        assert float(evtp.grid_radius[0]) <= 2 * float(grid.grid_radius[0])
        if keep >= 0.2:
            assert float(evtp.grid_radius[0]) <= float(grid.grid_radius[0])
        assert torch.equal(kcenter.indices[0], torch.arange(kcenter.k)), "no feature distance: lowest indices"
        assert float(kcenter.grid_radius[0]) >= 3 * float(evtp.grid_radius[0])


def test_duplicate_tokens_are_picked_once():
    generator = torch.Generator().manual_seed(3)
    distinct = torch.randn(1, 6, 8, generator=generator)
    features = distinct.repeat(1, 4, 1)  # 24 tokens, each feature vector 4 times
    for method in ("evtp", "kcenter", "divprune"):
        rows = select_tokens(features, (4, 6), 20, method).indices[0].tolist()
        assert len(set(rows)) == 20


@pytest.mark.parametrize("grid", [(1, 12), (12, 1), (1, 1)])
def test_degenerate_grids(grid):
    n = grid[0] * grid[1]
    sel = select_tokens(torch.randn(2, n, 4), grid, 0.5)
    assert sel.indices.shape == (2, max(1, round(0.5 * n)))
