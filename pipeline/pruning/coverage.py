"""Coverage of a token subset: the k-center objective in feature space and in grid cells (pruning.md §1.8)."""

from dataclasses import dataclass

import torch

from .geometry import Grid, center_normalize, spatial_sqdist, sqdist_to
from .validation import check_features

# Kept rows read per step when measuring coverage: (32 frames, 64, 729) float32 is 6 MB.
KEPT_CHUNK = 64


@dataclass(frozen=True)
class Coverage:
    """Per-frame covering radii, each ``(batch,)`` float32."""

    feature: torch.Tensor
    grid: torch.Tensor


def covering_radius(nearest: torch.Tensor) -> torch.Tensor:
    """``max_i min_{j in S} d(i, j)`` from each token's squared distance to its nearest kept token.

    Args:
        nearest: ``(batch, N)`` squared distances (``-inf`` or ~0 at the kept tokens).

    Returns:
        ``(batch,)`` float32 radii.
    """
    return nearest.amax(dim=1).clamp_min(0.0).sqrt()


def nearest_kept(
    sqdist: torch.Tensor,
    indices: torch.Tensor,
    spatial: torch.Tensor | None = None,
    lam: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each token's squared distance to its nearest kept token, read off a symmetric distance matrix.

    With ``spatial`` and ``lam``, the distances are ``sqdist - λ^2 spatial``: the feature part of
    EVTP's augmented distance. Kept rows are read ``KEPT_CHUNK`` at a time: gathering all ``K`` at
    once makes a ``(batch, K, N)`` copy that costs more than the loop at K = 364.

    Args:
        sqdist: ``(batch, N, N)``, or ``(N, N)`` shared by every frame.
        indices: ``(batch, K)`` int64 kept tokens.
        spatial: ``(N, N)`` squared position distances to take off, with ``lam`` ``(batch,)``.

    Returns:
        ``(batch, N)`` float32.
    """
    b, k = indices.shape
    n = sqdist.shape[-1]
    offset = 0 if sqdist.dim() == 2 else torch.arange(b, device=indices.device)[:, None] * n
    rows = sqdist.reshape(-1, n)
    nearest = None
    for lo in range(0, k, KEPT_CHUNK):
        kept = indices[:, lo : lo + KEPT_CHUNK]
        d = rows.index_select(0, (kept + offset).flatten()).view(b, -1, n)
        if spatial is not None:
            pos = spatial.index_select(0, kept.flatten()).view(b, -1, n)
            d.addcmul_(lam.square()[:, None, None], pos, value=-1.0)
        d = d.amin(dim=1)
        nearest = d if nearest is None else torch.minimum(nearest, d, out=nearest)
    return nearest


def grid_radius(indices: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Covering radius of the kept positions in grid cells, ``(batch, K)`` -> ``(batch,)``."""
    return covering_radius(nearest_kept(spatial_sqdist(grid, indices.device, normalised=False), indices))


def feature_radius(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Covering radius over features already centred and normalised, ``(batch, N, D)`` -> ``(batch,)``."""
    d = sqdist_to(x, torch.linalg.vector_norm(x, dim=-1).square_(), indices)  # (B, N, K)
    # A kept token's distance to itself is 0; the Gram form leaves rounding there instead.
    d.scatter_(1, indices[:, None, :], 0.0)
    return covering_radius(d.amin(dim=2))


def coverage_radius(features: torch.Tensor, indices: torch.Tensor, grid: Grid) -> Coverage:
    """The k-center objective of kept tokens: how far the worst-covered token is from its nearest kept one.

    Args:
        features: ``(batch, N, D)``, any float dtype; distances are taken between the frame's
            centred, L2-normalised features (pruning.md §1.3 step 2), in float32.
        indices: ``(batch, K)`` int64 kept tokens.
        grid: ``(h, w)`` with ``h*w == N``.

    Returns:
        ``Coverage(feature, grid)``: radii in feature space and in grid cells, each ``(batch,)``.

    Raises:
        ValueError: bad features or grid (as ``select_tokens``), or indices of the wrong shape or range.
    """
    features, grid = check_features(features, grid)
    b, n, _ = features.shape
    if indices.dim() != 2 or indices.shape[0] != b or indices.shape[1] == 0:
        raise ValueError(f"indices must be (batch={b}, K>0), got shape {tuple(indices.shape)}")
    indices = indices.to(device=features.device, dtype=torch.int64)
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices must lie in [0, {n}), got range [{int(indices.min())}, {int(indices.max())}]")
    return measure(features, indices, grid)


def measure(features: torch.Tensor, indices: torch.Tensor, grid: Grid) -> Coverage:
    """``coverage_radius`` on inputs already checked: float32 ``(batch, N, D)`` features, int64 indices."""
    return Coverage(feature=feature_radius(center_normalize(features), indices), grid=grid_radius(indices, grid))
