"""Selections that use no feature distances: random, a uniform grid, top-K of given scores, and no pruning."""

import math

import torch

from .coverage import measure
from .geometry import Grid
from .selection import Selection, all_tokens
from .validation import check_scores


def _described(features: torch.Tensor, indices: torch.Tensor, grid: Grid) -> Selection:
    """A selection with its coverage measured; λ is NaN since no distance chose the tokens."""
    cover = measure(features, indices, grid)
    lam = torch.full((features.shape[0],), float("nan"), device=features.device)
    return Selection(indices=indices, feature_radius=cover.feature, grid_radius=cover.grid, lam=lam)


def random_tokens(features: torch.Tensor, grid: Grid, k: int, *, seed: int = 0) -> Selection:
    """``k`` tokens per frame uniformly at random, reproducible from ``seed`` on any device.

    The draw happens on a CPU generator, so CPU and CUDA runs keep the same tokens.
    """
    b, n, _ = features.shape
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(b, n, generator=generator)
    indices = keys.argsort(dim=1, stable=True)[:, :k].sort(dim=1).values.to(features.device)
    return _described(features, indices, grid)


def lattice(grid: Grid, k: int) -> list[int]:
    """``k`` tokens spread uniformly over an ``h x w`` grid, ascending.

    Rows are evenly spaced (about ``sqrt(k·h/w)`` of them, enough that no row needs more than ``w``
    tokens); the ``k`` tokens are shared out evenly among the rows and evenly spaced within each
    row. Every position is the centre of its stratum, ``floor((j + 1/2)·size/count)``.
    """
    h, w = grid
    rows = min(h, k, max(math.ceil(k / w), round(math.sqrt(k * h / w)), 1))
    picked = []
    for j in range(rows):
        row = (2 * j + 1) * h // (2 * rows)
        count = (j + 1) * k // rows - j * k // rows
        picked.extend(row * w + (2 * m + 1) * w // (2 * count) for m in range(count))
    return picked


def grid_tokens(features: torch.Tensor, grid: Grid, k: int) -> Selection:
    """Uniform spatial subsampling: the same ``lattice(grid, k)`` tokens in every frame."""
    b = features.shape[0]
    indices = torch.tensor(lattice(grid, k), device=features.device).expand(b, k).contiguous()
    return _described(features, indices, grid)


def attention_tokens(features: torch.Tensor, grid: Grid, k: int, *, scores: torch.Tensor) -> Selection:
    """Top-``k`` tokens of a per-token score (FastV/VisionZip-style attention received), ties to the lowest index.

    Args:
        scores: ``(batch, N)`` any real dtype; higher means keep.
    """
    b, n, _ = features.shape
    scores = check_scores(scores, b, n).to(features.device)
    # A stable descending sort keeps equal scores in index order: ties go to the lowest index.
    order = scores.sort(dim=1, descending=True, stable=True).indices
    return _described(features, order[:, :k].sort(dim=1).values, grid)


def no_pruning(features: torch.Tensor, grid: Grid, k: int) -> Selection:
    """Every token, whatever ``keep`` says: the unpruned reference."""
    b, n, _ = features.shape
    return all_tokens(b, n, torch.full((b,), float("nan"), device=features.device), features.device)
