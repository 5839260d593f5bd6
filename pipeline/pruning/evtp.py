"""EVTP: greedy k-center over centred, normalised features augmented with λ-scaled token coordinates.

The project's definition (pruning.md §1.3), after the EVTP-IVS abstract (arXiv 2508.11886: "builds
upon the k-center by integrating spatial information to ensure better coverage"): per frame,
``e_i = [x_i ; λ p_i]`` with ``x_i`` the centred, L2-normalised feature and ``p_i`` the coordinates in
``[0, 1]^2``; ``λ = α sqrt(tr Cov(X) / tr Cov(P))`` matches the variances of the two blocks.
"""

import math

import torch

from .coverage import covering_radius, grid_radius, nearest_kept
from .geometry import Grid, center_normalize, coords, spatial_sqdist
from .kcenter import farthest_first, first_center, pairwise_sqdist
from .selection import Selection, all_tokens


def adaptive_lambda(x: torch.Tensor, grid: Grid, alpha: float = 1.0) -> torch.Tensor:
    """λ = α·sqrt(T_X / T_P) per frame (pruning.md §1.3 step 4).

    ``T_X = tr Cov(X)``, ``T_P = tr Cov(P)`` (both with the 1/N divisor). λ = 0 when ``T_P = 0`` (a 1x1
    grid); λ = α when ``T_X = 0``: a frame without feature variation is then selected spatially.

    Args:
        x: ``(batch, N, D)`` centred, normalised features.
        grid: ``(h, w)``.
        alpha: balance of the spatial term, ``>= 0``.

    Returns:
        ``(batch,)`` float32.
    """
    p = coords(grid, x.device)
    t_p = float((p - p.mean(0)).square().sum(1).mean())
    if t_p == 0.0:
        return torch.zeros(x.shape[0], device=x.device)
    t_x = (torch.linalg.vector_norm(x, dim=-1).square_().mean(1) - x.mean(1).square().sum(-1)).clamp_min_(0.0)  # (B,)
    return torch.where(t_x > 0, alpha * (t_x / t_p).sqrt(), torch.full_like(t_x, alpha))


def evtp(
    features: torch.Tensor,
    grid: Grid,
    k: int,
    *,
    alpha: float = 1.0,
    lam: float | None = None,
    first: str = "most_isolated",
) -> Selection:
    """Select ``k`` tokens per frame by EVTP.

    Args:
        features: ``(batch, N, D)`` float32 (validated by ``select_tokens``).
        grid: ``(h, w)``.
        k: tokens to keep.
        alpha: scales the adaptive λ (ignored when ``lam`` is given).
        lam: a fixed λ instead of the adaptive one; 0 gives plain k-center.
        first: first-centre rule, see ``kcenter.first_center``.

    Returns:
        The selection; ``lam`` holds the λ used per frame.
    """
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if lam is not None and (not math.isfinite(lam) or lam < 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    b, n, _ = features.shape
    x = center_normalize(features)
    lams = adaptive_lambda(x, grid, alpha) if lam is None else torch.full((b,), float(lam), device=x.device)
    if k == n:
        return all_tokens(b, n, lams, x.device)
    spatial = spatial_sqdist(grid, x.device)
    dist = pairwise_sqdist(x, spatial, lams)
    picks = farthest_first(dist, k, first_center(dist, first, grid))
    indices = picks.sort(dim=1).values
    return Selection(
        indices=indices,
        feature_radius=covering_radius(nearest_kept(dist, indices, spatial, lams)),
        grid_radius=grid_radius(indices, grid),
        lam=lams,
    )


def kcenter(features: torch.Tensor, grid: Grid, k: int, *, first: str = "most_isolated") -> Selection:
    """Greedy k-center on the centred, L2-normalised features, no coordinates: EVTP with λ = 0."""
    return evtp(features, grid, k, lam=0.0, first=first)
