"""The uniform lattice of the grid method, by hand."""

import pytest

from pipeline.pruning.baselines import lattice


def test_lattice_by_hand():
    # 3x3 of a 27x27 grid: rows and columns at the stratum centres 4, 13, 22.
    assert lattice((27, 27), 9) == [r * 27 + c for r in (4, 13, 22) for c in (4, 13, 22)]
    assert lattice((27, 27), 1) == [364]  # the middle token
    # 5 of a 3x3 grid: 2 rows (0 and 2) holding 2 and 3 tokens.
    assert lattice((3, 3), 5) == [0, 2, 6, 7, 8]
    assert lattice((2, 3), 6) == list(range(6))
    assert lattice((1, 10), 3) == [1, 5, 8]


@pytest.mark.parametrize("grid", [(27, 27), (24, 24), (16, 16), (6, 8), (9, 4), (1, 7), (7, 1)])
def test_lattice_is_k_distinct_sorted_tokens(grid):
    n = grid[0] * grid[1]
    for k in range(1, n + 1):
        picked = lattice(grid, k)
        assert len(picked) == k and picked == sorted(set(picked)) and 0 <= picked[0] and picked[-1] < n
