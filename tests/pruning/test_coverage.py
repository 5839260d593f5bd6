"""coverage_radius: hand-computed radii, the loop reference, and agreement with the selection's own diagnostics."""

import math

import pytest
import torch

from pipeline.pruning import METHODS, coverage_radius, select_tokens

from . import reference as ref


@pytest.mark.parametrize(
    ("kept", "radius"), [([0], 4.0), ([2], 2.0), ([0, 4], 2.0), ([1, 3], 1.0), ([0, 1, 2, 3, 4], 0.0)]
)
def test_grid_radius_on_a_line(kept, radius):
    features = torch.randn(1, 5, 3)
    assert float(coverage_radius(features, torch.tensor([kept]), (1, 5)).grid) == radius


def test_grid_radius_is_euclidean_in_cells():
    # Kept: the top-left corner of a 3x4 grid; the farthest token is (2, 3): sqrt(4 + 9).
    assert math.isclose(
        float(coverage_radius(torch.randn(1, 12, 3), torch.tensor([[0]]), (3, 4)).grid), math.sqrt(13), rel_tol=1e-6
    )


def test_feature_radius_of_orthogonal_tokens():
    # Three one-hot tokens: centred and normalised they are equidistant (sqrt(3) apart on the unit sphere).
    features = torch.eye(3)[None]
    assert math.isclose(
        float(coverage_radius(features, torch.tensor([[1]]), (1, 3)).feature), math.sqrt(3), rel_tol=1e-6
    )


def test_equals_loop_reference(frames):
    features, grid = frames
    indices = torch.stack([torch.randperm(48, generator=torch.Generator().manual_seed(i))[:9] for i in range(3)])
    cover = coverage_radius(features, indices, grid)
    for i, v in enumerate(features.numpy()):
        kept = indices[i].tolist()
        assert math.isclose(float(cover.feature[i]), ref.feature_radius(v, kept), rel_tol=1e-5)
        assert math.isclose(float(cover.grid[i]), ref.grid_radius(grid, kept), rel_tol=1e-6)


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"attention", "visionzip"}))  # these need scores
def test_selection_diagnostics_equal_coverage_radius(method, frames):
    features, grid = frames
    sel = select_tokens(features, grid, 0.2, method)
    cover = coverage_radius(features, sel.indices, grid)
    torch.testing.assert_close(sel.feature_radius, cover.feature, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sel.grid_radius, cover.grid)


def test_evtp_covers_space_better_than_random():
    features = torch.randn(8, 729, 32, generator=torch.Generator().manual_seed(0))
    evtp = select_tokens(features, (27, 27), 0.1)
    rand = select_tokens(features, (27, 27), 0.1, "random")
    assert torch.all(evtp.grid_radius < rand.grid_radius)
    assert evtp.feature_radius.mean() < rand.feature_radius.mean()
