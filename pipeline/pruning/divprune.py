"""DivPrune (Alvar et al., CVPR 2025): max-min diversity on the cosine distance of the raw features.

vbdi/divprune@799e2d95:LLaVA/llava/model/llava_arch.py ``DivPrune``: ``1 - cos`` over uncentred
tokens, the first pick is the token whose nearest neighbour is farthest, then each pick maximises
the distance to the closest pick so far. Two deliberate differences (pruning.md §5.2): picked tokens
are masked out of the argmax (the original can pick an exact duplicate twice; our contract is
unique indices), and the self-distance is excluded explicitly rather than by its "second-smallest
entry" trick. ``1 - cos = ||x̂_i - x̂_j||^2 / 2``, so farthest-first on squared chordal distances makes
the same picks.
"""

import torch

from .coverage import measure
from .geometry import Grid, l2_normalize
from .kcenter import farthest_first, first_center, pairwise_sqdist
from .selection import Selection, all_tokens


def divprune(features: torch.Tensor, grid: Grid, k: int) -> Selection:
    """Select ``k`` tokens per frame by DivPrune; ``features`` is ``(batch, N, D)`` float32."""
    b, n, _ = features.shape
    lam = torch.zeros(b, device=features.device)
    if k == n:
        return all_tokens(b, n, lam, features.device)
    dist = pairwise_sqdist(l2_normalize(features))
    picks = farthest_first(dist, k, first_center(dist, "most_isolated", grid))
    indices = picks.sort(dim=1).values
    cover = measure(features, indices, grid)
    return Selection(indices=indices, feature_radius=cover.feature, grid_radius=cover.grid, lam=lam)
