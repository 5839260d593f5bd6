"""The farthest-first engine: hand-computed traversals and the 2-approximation bound."""

import itertools

import pytest
import torch

from pipeline.pruning import select_tokens
from pipeline.pruning.kcenter import farthest_first, first_center

from . import reference as ref


def line_distances(points):
    p = torch.tensor(points, dtype=torch.float32)
    return (p[:, None] - p[None, :]).abs()[None]  # (1, N, N)


def test_traversal_on_a_line_breaks_ties_by_lowest_index():
    dist = line_distances([0, 1, 2, 3, 4])
    # From 0: 4 is farthest; then 2 (distance 2); then 1 and 3 tie at 1: 1 first; then 3.
    assert farthest_first(dist, 5, torch.tensor([0])).tolist() == [[0, 4, 2, 1, 3]]


def test_duplicates_come_last():
    dist = line_distances([0, 0, 5, 5, 9])
    assert farthest_first(dist, 5, torch.tensor([0])).tolist() == [[0, 4, 2, 1, 3]]


def test_first_center_rules():
    dist = line_distances([0, 1, 4, 6, 7]).square()
    assert first_center(dist, "most_isolated", (1, 5)).tolist() == [2]  # its nearest neighbour is 2 away
    assert first_center(line_distances([0, 3, 6, 7]), "most_isolated", (1, 4)).tolist() == [0]  # 0 and 3 tie
    assert first_center(dist, "farthest_from_mean", (1, 5)).tolist() == [0]  # mean 3.6: 0 is 3.6 away
    assert first_center(dist, "grid_center", (1, 5)).tolist() == [2]
    assert first_center(dist, "index0", (1, 5)).tolist() == [0]
    assert first_center(torch.zeros(1, 729, 729), "grid_center", (27, 27)).tolist() == [364]
    with pytest.raises(ValueError, match="first-centre rule 'middle'"):
        first_center(dist, "middle", (1, 5))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("grid", [(3, 4), (2, 5), (3, 3)])
def test_greedy_is_within_twice_the_optimal_radius(seed, grid):
    n = grid[0] * grid[1]
    v = torch.randn(1, n, 5, generator=torch.Generator().manual_seed(seed))
    for method, lam in (("evtp", None), ("kcenter", 0.0)):
        e, _ = ref.augmented(v[0].numpy(), grid, lam=lam)
        d = ref.distances(e)
        for k in range(1, n):
            picked = select_tokens(v, grid, k, method).indices[0].tolist()
            optimum = min(ref.radius(d, s) for s in itertools.combinations(range(n), k))
            greedy = ref.radius(d, picked)
            assert optimum - 1e-9 <= greedy <= 2 * optimum + 1e-6, (method, k)
