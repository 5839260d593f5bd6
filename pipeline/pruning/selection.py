"""The result of a token selection: kept indices and the coverage they achieve."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Selection:
    """Kept tokens of a batch of frames, with per-frame diagnostics.

    Attributes:
        indices: ``(batch, K)`` int64, unique per row, ascending (raster order).
        feature_radius: ``(batch,)`` float32, the k-center objective ``max_i min_{j in S} ||x_i - x_j||``
            over the frame's centred, L2-normalised features (EVTP's space at λ = 0; the same space
            for every method, so radii compare across methods).
        grid_radius: ``(batch,)`` float32, the same objective over token positions, in grid cells.
        lam: ``(batch,)`` float32, the spatial weight λ used (0 for the feature-only k-center
            methods, NaN for methods that use no distance).
        features: ``(batch, K, D)`` float32, the kept tokens' features when a method merges (``visionzip``), in
            the order of ``indices``; None means gather ``indices`` from the input features. The radii are
            measured on the input features at ``indices`` either way.
    """

    indices: torch.Tensor
    feature_radius: torch.Tensor
    grid_radius: torch.Tensor
    lam: torch.Tensor
    features: torch.Tensor | None = None

    @property
    def k(self) -> int:
        """Tokens kept per frame."""
        return self.indices.shape[1]


def all_tokens(batch: int, n: int, lam: torch.Tensor, device: torch.device) -> Selection:
    """Every token of every frame: nothing is pruned, so both radii are 0."""
    zeros = torch.zeros(batch, device=device)
    indices = torch.arange(n, device=device).expand(batch, n).contiguous()
    return Selection(indices=indices, feature_radius=zeros, grid_radius=zeros.clone(), lam=lam)
