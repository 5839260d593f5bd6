"""Greedy k-center (Gonzalez's farthest-first traversal), batched over frames on a distance matrix.

Gonzalez (1985), "Clustering to minimize the maximum intercluster distance": each pick is the token
farthest from those already picked, a 2-approximation of the optimal covering radius in any metric.
The distances are taken once as a Gram product (pruning.md §1.10, §9): the O(K·N) loop then only
reads one row per frame per step, and no value leaves the device inside the loop.
"""

import torch

from .geometry import Grid, sqdist

FIRST_CENTERS = ("most_isolated", "farthest_from_mean", "grid_center", "index0")

# Rows per strip of the triangular Gram: small enough that a strip of a 32-frame batch stays in a
# 32 MB L3 while it is finished, large enough that each GEMM still runs at full speed (measured
# 0.57x of the full Gram at 128 rows, N = 729, D = 1152).
STRIP_ROWS = 128


def pairwise_sqdist(
    x: torch.Tensor, spatial: torch.Tensor | None = None, lam: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distances ``||x_i - x_j||^2 + λ^2 ||p_i - p_j||^2`` for every pair of tokens of each frame.

    The feature term uses the general Gram form ``|x_i|^2 + |x_j|^2 - 2 x_i·x_j`` (a token equal to the
    frame mean has x = 0, not a unit vector); the spatial term is added from its own matrix, so a
    frame with no feature variation gets exact spatial ties.

    The matrix is symmetric, so only its upper triangle is multiplied out, one strip of rows at a
    time, and mirrored (the block-triangular SYRK of pruning.md §8.2; PyTorch has no batched SYRK):
    0.58 of a full Gram's multiply-adds at N = 729, measured 0.57x its time on CPU. Each strip is
    finished while it is in cache.

    Args:
        x: ``(batch, N, D)`` float32 features.
        spatial: ``(N, N)`` squared position distances, or None for features only.
        lam: ``(batch,)`` spatial weight λ per frame (needed with ``spatial``).

    Returns:
        ``(batch, N, N)`` float32, non-negative, symmetric, zero diagonal.
    """
    b, n, _ = x.shape
    sq = torch.linalg.vector_norm(x, dim=-1).square_()  # (B, N)
    lam2 = None if spatial is None or not bool((lam != 0).any()) else lam.square()[:, None, None]
    dist = torch.empty(b, n, n, dtype=x.dtype, device=x.device)
    for lo in range(0, n, STRIP_ROWS):
        hi = min(n, lo + STRIP_ROWS)
        strip = sqdist(x[:, lo:hi], sq[:, lo:hi], x[:, lo:], sq[:, lo:])  # (B, hi-lo, n-lo)
        if lam2 is not None:
            strip.addcmul_(lam2, spatial[lo:hi, lo:])
        dist[:, lo:hi, lo:] = strip
        dist[:, hi:, lo:hi] = strip[:, :, hi - lo :].transpose(1, 2)
    dist.diagonal(dim1=1, dim2=2).zero_()
    return dist


def first_center(dist: torch.Tensor, rule: str, grid: Grid) -> torch.Tensor:
    """The first pick of the traversal (pruning.md §1.6 ``first_center``).

    Args:
        dist: ``(batch, N, N)`` squared distances (zero diagonal; left unchanged).
        rule: ``most_isolated`` (argmax_i min_{j != i} d(i, j), DivPrune's rule), ``farthest_from_mean``
            (argmax_i ||e_i - ē||), ``grid_center`` (the middle token) or ``index0``.
        grid: ``(h, w)``.

    Returns:
        ``(batch,)`` int64.
    """
    b, n, _ = dist.shape
    if rule == "most_isolated":
        diag = dist.diagonal(dim1=1, dim2=2)
        diag.fill_(float("inf"))  # exclude the self-distance explicitly
        nearest = dist.amin(dim=2)
        diag.zero_()
        return nearest.argmax(dim=1)
    if rule == "farthest_from_mean":
        # sum_j ||e_i - e_j||^2 = N ||e_i - ē||^2 + const, so the row sums rank ||e_i - ē|| exactly.
        return dist.sum(dim=2).argmax(dim=1)
    if rule == "grid_center":
        h, w = grid
        return torch.full((b,), ((h - 1) // 2) * w + (w - 1) // 2, dtype=torch.int64, device=dist.device)
    if rule == "index0":
        return torch.zeros(b, dtype=torch.int64, device=dist.device)
    raise ValueError(f"unknown first-centre rule {rule!r}; expected one of {FIRST_CENTERS}")


def farthest_first(dist: torch.Tensor, k: int, start: torch.Tensor) -> torch.Tensor:
    """Farthest-first traversal of every frame at once.

    Picked tokens are masked out of the argmax, so exact duplicates are taken only once every other
    token is covered; ``argmax`` returns the first maximum, so ties go to the lowest index.

    Args:
        dist: ``(batch, N, N)`` symmetric distances (any monotone transform of a metric, e.g. squared).
        k: tokens to pick, ``1 <= k <= N``.
        start: ``(batch,)`` int64 first picks.

    Returns:
        ``(batch, k)`` int64 in pick order.
    """
    b, n, _ = dist.shape
    rows = dist.view(b * n, n)
    offset = torch.arange(b, device=dist.device) * n
    picks = [start]
    nearest = rows.index_select(0, start + offset)  # (B, N): distance to the closest pick so far
    nearest.scatter_(1, start[:, None], float("-inf"))
    for _ in range(1, k):
        pick = nearest.argmax(dim=1)
        picks.append(pick)  # a list, not picks[:, t] = ...: tensor indexing costs more than the step
        torch.minimum(nearest, rows.index_select(0, pick + offset), out=nearest)
        nearest.scatter_(1, pick[:, None], float("-inf"))
    return torch.stack(picks, dim=1)
