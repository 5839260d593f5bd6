"""Token-grid geometry and feature distances shared by the selection methods.

Tokens sit on an ``(h, w)`` grid in raster order: token ``i`` is at row ``i // w``, column ``i % w``.
"""

import torch

Grid = tuple[int, int]

# torch.nn.functional.normalize's convention: a vector shorter than this is left (near) zero.
NORM_EPS = 1e-12


def grid_cells(grid: Grid, device: torch.device | str = "cpu") -> torch.Tensor:
    """(row, col) of every token, in grid cells.

    Returns:
        ``(h*w, 2)`` float32.
    """
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.stack([rows, cols], dim=1).float()


def axis_scale(grid: Grid, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-axis factors that map cells to ``[0, 1]``: ``1/(h-1)``, ``1/(w-1)``; 0 for an axis of size 1.

    Returns:
        ``(2,)`` float32.
    """
    return torch.tensor([1.0 / (n - 1) if n > 1 else 0.0 for n in grid], device=device)


def coords(grid: Grid, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised coordinates ``p_i = (row/(h-1), col/(w-1))`` (pruning.md §1.3 step 3).

    Returns:
        ``(h*w, 2)`` float32 in ``[0, 1]``.
    """
    return grid_cells(grid, device) * axis_scale(grid, device)


def spatial_sqdist(grid: Grid, device: torch.device | str = "cpu", *, normalised: bool = True) -> torch.Tensor:
    """Squared distances between token positions, ``||p_i - p_j||^2``.

    Computed from cell differences (``(Δrow/(h-1))^2 + (Δcol/(w-1))^2``) so that pairs at the same
    offset get bit-identical values: on a constant frame EVTP's ties are then exact and the
    lowest-index rule decides them.

    Args:
        grid: ``(h, w)``.
        device: where to build it.
        normalised: coordinates in ``[0, 1]`` (EVTP's space) if True, else in grid cells.

    Returns:
        ``(h*w, h*w)`` float32.
    """
    rows, cols = grid_cells(grid, device).unbind(1)
    scale_r, scale_c = axis_scale(grid, device).tolist() if normalised else (1.0, 1.0)
    # Differences of exact integers first, scaled after: equal offsets give bit-equal distances.
    d_rows = (rows[:, None] - rows[None, :]).mul_(scale_r).square_()
    return d_rows.add_((cols[:, None] - cols[None, :]).mul_(scale_c).square_())


def center_normalize(features: torch.Tensor) -> torch.Tensor:
    """Centre each frame on its mean token, then scale every token to unit L2 norm (pruning.md §1.3 step 2).

    Args:
        features: ``(batch, tokens, dim)`` float32.

    Returns:
        ``(batch, tokens, dim)`` float32; a token equal to the frame mean stays zero.
    """
    x = features - features.mean(dim=1, keepdim=True)
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(NORM_EPS))


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Scale every token to unit L2 norm, without centring (cosine geometry, as DivPrune uses).

    Returns:
        ``(batch, tokens, dim)`` float32.
    """
    return features / torch.linalg.vector_norm(features, dim=-1, keepdim=True).clamp_min(NORM_EPS)


def sqdist(a: torch.Tensor, sq_a: torch.Tensor, b: torch.Tensor, sq_b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between two sets of tokens per frame, in the Gram form.

    ``|a_i|^2 + |b_j|^2 - 2 a_i·b_j``: one batched GEMM (``baddbmm`` folds in ``|b_j|^2``) and one pass.

    Args:
        a: ``(batch, M, D)``; ``sq_a`` ``(batch, M)`` its squared norms.
        b: ``(batch, K, D)``; ``sq_b`` ``(batch, K)`` its squared norms.

    Returns:
        ``(batch, M, K)`` float32, clamped at 0 (cancellation can leave it slightly negative).
    """
    d = torch.baddbmm(sq_b[:, None, :], a, b.transpose(1, 2), alpha=-2.0)
    return d.add_(sq_a[:, :, None]).clamp_min_(0.0)


def sqdist_to(x: torch.Tensor, sq: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared distances from every token to some target tokens of its frame.

    Args:
        x: ``(batch, N, D)`` features; ``sq`` ``(batch, N)`` their squared norms.
        targets: ``(batch, K)`` int64 token indices.

    Returns:
        ``(batch, N, K)`` float32.
    """
    kept = x.gather(1, targets[:, :, None].expand(-1, -1, x.shape[-1]))  # (B, K, D)
    return sqdist(x, sq, kept, sq.gather(1, targets))
