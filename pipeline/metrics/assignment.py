"""Minimum-cost assignment, step for step as ``scipy.optimize.linear_sum_assignment`` solves it.

DAVIS's unsupervised evaluation pairs proposals with ground-truth objects by ``linear_sum_assignment`` (metrics.md
§1.3). When several assignments tie, which one is returned depends on the algorithm's order of operations, and it
changes J-Mean and F-Mean (not their sum). So this is a port of scipy's solver (scipy/scipy
scipy/optimize/rectangular_lsap/rectangular_lsap.cpp: Crouse's shortest augmenting path, PM Larsen), same loops, same
tie-breaking, same float64 arithmetic, rather than any other Hungarian implementation.
"""

import numpy as np


def _augmenting_path(
    cost: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    path: list[int],
    row4col: list[int],
    shortest: np.ndarray,
    row: int,
    seen_rows: list[bool],
    seen_cols: list[bool],
) -> tuple[int, float]:
    """rectangular_lsap.cpp ``augmenting_path``: the sink column of the shortest augmenting path from ``row``."""
    nc = cost.shape[1]
    min_val = 0.0
    # Filled in reverse so that a constant cost matrix gives the identity (scipy issue #11602).
    remaining = list(range(nc - 1, -1, -1))
    seen_rows[:] = [False] * len(seen_rows)
    seen_cols[:] = [False] * nc
    shortest[:] = np.inf
    i, sink = row, -1
    while sink == -1:
        index, lowest = -1, np.inf
        seen_rows[i] = True
        for it, j in enumerate(remaining):
            r = min_val + cost[i, j] - u[i] - v[j]
            if r < shortest[j]:
                path[j] = i
                shortest[j] = r
            # Among equal costs prefer a free column: it ends the path (rectangular_lsap.cpp comment).
            if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                lowest = shortest[j]
                index = it
        min_val = float(lowest)
        if min_val == np.inf:
            raise ValueError("the cost matrix is infeasible")
        j = remaining[index]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
        seen_cols[j] = True
        # The C++ code moves the last remaining column into the freed slot.
        remaining[index] = remaining[-1]
        remaining.pop()
    return sink, min_val


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment of a 2-D cost matrix (scipy's result, ties included).

    Args:
        cost: ``(n_rows, n_cols)`` float cost matrix without NaN or -inf.

    Returns:
        ``(row_ind, col_ind)`` int64 arrays of length ``min(n_rows, n_cols)``, ``row_ind`` ascending, as scipy returns.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"expected a 2-D cost matrix, got shape {cost.shape}")
    if cost.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.isnan(cost).any() or (cost == -np.inf).any():
        raise ValueError("the cost matrix contains NaN or -inf")
    # A tall matrix is solved transposed, then the pairs are sorted by the original row (rectangular_lsap.cpp solve).
    transpose = cost.shape[1] < cost.shape[0]
    if transpose:
        cost = cost.T
    nr, nc = cost.shape
    u, v = np.zeros(nr), np.zeros(nc)
    shortest = np.full(nc, np.inf)
    path, col4row, row4col = [-1] * nc, [-1] * nr, [-1] * nc
    seen_rows, seen_cols = [False] * nr, [False] * nc
    for cur_row in range(nr):
        sink, min_val = _augmenting_path(cost, u, v, path, row4col, shortest, cur_row, seen_rows, seen_cols)
        # Dual update, in the C++ order.
        u[cur_row] += min_val
        for i in range(nr):
            if seen_rows[i] and i != cur_row:
                u[i] += min_val - shortest[col4row[i]]
        for j in range(nc):
            if seen_cols[j]:
                v[j] -= min_val - shortest[j]
        # Augment along the path back to cur_row.
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == cur_row:
                break
    col4row_array = np.array(col4row, dtype=np.int64)
    if transpose:
        order = np.argsort(col4row_array, kind="stable")
        return col4row_array[order], order.astype(np.int64)
    return np.arange(nr, dtype=np.int64), col4row_array


__all__ = ["linear_sum_assignment"]
