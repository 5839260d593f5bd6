"""``select_tokens``: the one entry point to every visual-token selection method."""

import torch

from .baselines import attention_tokens, grid_tokens, no_pruning, random_tokens
from .divprune import divprune
from .evtp import evtp, kcenter
from .geometry import Grid
from .selection import Selection
from .validation import budget, check_features
from .visionzip import visionzip

# Each method takes (features (B, N, D) float32, grid, k, **its options) and returns a Selection.
METHODS = {
    "evtp": evtp,
    "kcenter": kcenter,
    "divprune": divprune,
    "random": random_tokens,
    "grid": grid_tokens,
    "attention": attention_tokens,
    "visionzip": visionzip,
    "none": no_pruning,
}


def select_tokens(features: torch.Tensor, grid: Grid, keep: float | int, method: str = "evtp", **options) -> Selection:
    """Choose which visual tokens of each frame to keep.

    Args:
        features: ``(batch, N, D)`` vision-encoder features, any float dtype (computed in float32).
        grid: ``(h, w)`` token grid, ``h*w == N``, tokens in raster order.
        keep: a ratio in ``(0, 1]`` (``K = max(1, round(keep*N))``, half to even) or an int count.
        method: one of ``METHODS``: ``evtp`` (options ``alpha``, ``lam``, ``first``), ``kcenter``
            (``first``), ``divprune``, ``random`` (``seed``), ``grid``, ``attention`` (``scores``, a
            ``(batch, N)`` tensor, required), ``visionzip`` (``scores`` and ``keys`` ``(batch, N, dk)``,
            required; ``contextual``) or ``none`` (keeps all ``N``).
        **options: the method's options.

    Returns:
        ``Selection`` with ``indices`` ``(batch, K)`` ascending and per-frame coverage diagnostics (and, for a
        merging method, the merged ``features``).

    Raises:
        ValueError: bad features, grid, keep, method or option value.
        TypeError: an option the method does not take.
    """
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; expected one of {sorted(METHODS)}")
    features, grid = check_features(features, grid)
    k = budget(keep, features.shape[1])
    return METHODS[method](features, grid, k, **options)
