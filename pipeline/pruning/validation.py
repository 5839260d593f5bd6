"""Input checks for token selection: every bad input raises ``ValueError`` naming the problem."""

import math
import numbers

import torch

from .geometry import Grid


def check_grid(grid: Grid) -> Grid:
    """Return ``grid`` as ``(h, w)`` ints, or raise if it is not two positive integers."""
    if not isinstance(grid, (tuple, list)) or len(grid) != 2:
        raise ValueError(f"grid must be (h, w), got {grid!r}")
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in grid):
        raise ValueError(f"grid sides must be positive integers, got {grid!r}")
    return int(grid[0]), int(grid[1])


def check_features(features: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, Grid]:
    """Validate ``(batch, tokens, dim)`` features against their grid.

    Returns:
        The features upcast to float32 (no copy when they already are) and the checked grid.

    Raises:
        ValueError: not a float tensor, wrong rank, empty batch, ``h*w != N``, or NaN/Inf (naming the rows).
    """
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(
            f"features must have rank 3 (batch, tokens, dim), got rank {features.dim()} "
            f"with shape {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    b, n, _ = features.shape
    if b == 0:
        raise ValueError(f"empty batch: features has shape {tuple(features.shape)}")
    if n == 0:
        raise ValueError(f"no tokens: features has shape {tuple(features.shape)}")
    h, w = check_grid(grid)
    if h * w != n:
        raise ValueError(f"grid {h}x{w} holds {h * w} tokens but features have N={n}")
    features = features.float()
    # One reduction finds any NaN/Inf (they poison the sum); only then look for the rows.
    if not torch.isfinite(features.sum()):
        bad = (~torch.isfinite(features).flatten(1).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            raise ValueError(f"features contain NaN or Inf in batch row(s) {shown}")
    return features, (h, w)


def budget(keep: float | int, n: int) -> int:
    """Number of tokens to keep out of ``n`` (pruning.md §1.3 step 1).

    Args:
        keep: a ratio in ``(0, 1]`` (a float), giving ``K = min(n, max(1, round(keep * n)))`` with
            round-half-to-even as DivPrune's ``int(round(ratio * N))``; or a count in ``[1, n]`` (an int).
        n: tokens per frame.

    Raises:
        ValueError: a ratio outside ``(0, 1]``, a count outside ``[1, n]``, or not a number.
    """
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise ValueError(f"keep must be a ratio in (0, 1] or an int count, got {keep!r}")
    if isinstance(keep, numbers.Integral):
        if not 1 <= keep <= n:
            raise ValueError(f"keep as a count must be in [1, {n}], got {keep}")
        return int(keep)
    keep = float(keep)
    if math.isnan(keep) or not 0.0 < keep <= 1.0:
        raise ValueError(f"keep as a ratio must be in (0, 1], got {keep}")
    return min(n, max(1, round(keep * n)))


def check_scores(scores: object, batch: int, n: int, name: str = "scores") -> torch.Tensor:
    """Validate a ``(batch, N)`` per-token score and return it as float32.

    Raises:
        ValueError: not a tensor of that shape, or NaN/Inf (naming the rows).
    """
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (batch, n):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{name} must be a (batch={batch}, N={n}) tensor, got {shape}")
    scores = scores.float()
    bad = (~torch.isfinite(scores).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{name} contain NaN or Inf in batch row(s) {bad[:10]}")
    return scores


def check_keys(keys: object, batch: int, n: int) -> torch.Tensor:
    """Validate ``(batch, N, dk)`` per-token key vectors (a merge metric) and return them as float32.

    Raises:
        ValueError: not a floating tensor of that shape, or NaN/Inf (naming the rows).
    """
    shape = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__
    if not isinstance(keys, torch.Tensor) or keys.dim() != 3 or tuple(keys.shape[:2]) != (batch, n):
        raise ValueError(f"keys must be a (batch={batch}, N={n}, dk) tensor, got {shape}")
    if not keys.is_floating_point() or keys.shape[2] == 0:
        raise ValueError(f"keys must be floating point with dk > 0, got dtype {keys.dtype} and shape {shape}")
    keys = keys.float()
    bad = (~torch.isfinite(keys).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"keys contain NaN or Inf in batch row(s) {bad[:10]}")
    return keys
