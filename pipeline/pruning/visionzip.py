"""VisionZip (Yang et al., CVPR 2025): dominant tokens by attention, contextual tokens merged from the rest.

dvlab-research/VisionZip@3151f6df:visionzip/clip_encoder.py ``CLIPVisionTower_VisionZip.forward`` (pruning.md
§5.5): the top-d tokens by the [CLS] attention stay as they are; of the other tokens, c targets are taken at a
uniform index stride (``step = max(1, (N - d) // c)``), every remaining token joins the target whose key is the
most cosine-similar, and each target becomes ``target + sum(members) / max(1, count)``, i.e. the target plus the
mean of its members (``contextual_tokens = target_hidden + aggregated_hidden``), as pruning.md says.

Deliberate differences from the source:

- SigLIP has no [CLS] token. The score is the attention each token *receives* at the selected layer, averaged
  over heads and queries: DyToK's and FlashVID's substitute (pruning.md §5.5, §9 item 7). The other substitute,
  SigLIP's MAP-head probe, is not built in our tower (``vision.py``).
- No [CLS] is kept alongside, so all ``k`` slots go to patch tokens: ``d = k - c``.
- Equal scores go to the lowest index (a stable sort); the source's ``topk`` leaves the order of ties open.
- The kept tokens come back in raster order (dominant and contextual interleaved by index) like every other
  method's; the source puts the dominant block first and the contextual block after it.
"""

import math

import torch

from .coverage import measure
from .geometry import Grid, l2_normalize
from .selection import Selection, all_tokens
from .validation import check_keys, check_scores

# The contextual share of the budget: the README's 54 dominant + 10 contextual tokens for 64.
CONTEXTUAL = 10 / 64


def visionzip(
    features: torch.Tensor,
    grid: Grid,
    k: int,
    *,
    scores: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    contextual: float = CONTEXTUAL,
) -> Selection:
    """Keep ``k - c`` dominant tokens and ``c = round(k * contextual)`` merged contextual ones per frame.

    Args:
        features: ``(batch, N, D)`` float32 (validated by ``select_tokens``); what is kept and merged.
        grid: ``(h, w)``.
        k: tokens to keep; ``k == N`` keeps every token unmerged (``c = 0``).
        scores: ``(batch, N)`` the attention each token receives (higher is kept first); required.
        keys: ``(batch, N, dk)`` the same layer's keys averaged over heads, the merge metric; required.
        contextual: share of ``k`` given to contextual tokens, in ``[0, 1]``.

    Returns:
        The selection: ``indices`` (dominant and target tokens) ascending, ``features`` the kept features in
        that order (the targets merged); radii measured on ``features`` at ``indices``; λ NaN.

    Raises:
        ValueError: missing or malformed ``scores`` / ``keys``, or ``contextual`` outside ``[0, 1]``.
    """
    b, n, dim = features.shape
    if scores is None or keys is None:
        missing = [name for name, value in (("scores", scores), ("keys", keys)) if value is None]
        raise ValueError(f"visionzip needs {' and '.join(missing)}: the received attention and the keys of a layer")
    scores = check_scores(scores, b, n).to(features.device)
    keys = check_keys(keys, b, n).to(features.device)
    if not (isinstance(contextual, (int, float)) and math.isfinite(contextual) and 0.0 <= contextual <= 1.0):
        raise ValueError(f"contextual must be a share in [0, 1], got {contextual!r}")
    lam = torch.full((b,), float("nan"), device=features.device)
    if k == n:
        return all_tokens(b, n, lam, features.device)
    c = round(k * contextual)
    dominant = scores.sort(dim=1, descending=True, stable=True).indices[:, : k - c]  # ties: lowest index first
    merged = _rows(features, dominant)
    kept = dominant
    if c > 0:
        targets, contextual_tokens = _contextual(features, keys, dominant, c)
        kept = torch.cat([dominant, targets], dim=1)
        merged = torch.cat([merged, contextual_tokens], dim=1)
    kept, order = kept.sort(dim=1)
    merged = _rows(merged, order)
    cover = measure(features, kept, grid)
    return Selection(indices=kept, feature_radius=cover.feature, grid_radius=cover.grid, lam=lam, features=merged)


def _contextual(
    features: torch.Tensor, keys: torch.Tensor, dominant: torch.Tensor, c: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``c`` stride-picked targets among the non-dominant tokens, ``(batch, c)``, and their merged features.

    Every non-dominant, non-target token joins its most key-similar target (the first one on a tie, as
    ``argmax``); a target's contextual feature is its own plus the mean of its members' (``(batch, c, D)``).
    """
    b, n, dim = features.shape
    is_dominant = torch.zeros(b, n, dtype=torch.bool, device=features.device).scatter_(1, dominant, True)
    rest = is_dominant.to(torch.int8).argsort(dim=1, stable=True)[:, : n - dominant.shape[1]]  # index order
    step = max(1, rest.shape[1] // c)
    picked = torch.zeros(rest.shape[1], dtype=torch.bool, device=features.device)
    picked[torch.arange(0, rest.shape[1], step, device=features.device)[:c]] = True
    targets, members = rest[:, picked], rest[:, ~picked]
    metric = l2_normalize(keys)
    similarity = torch.bmm(_rows(metric, members), _rows(metric, targets).transpose(1, 2))  # (B, M, c)
    assign = similarity.argmax(dim=2)  # (B, M)
    sums = features.new_zeros(b, c, dim).scatter_add_(
        1, assign[:, :, None].expand(-1, -1, dim), _rows(features, members)
    )
    counts = features.new_zeros(b, c).scatter_add_(1, assign, features.new_ones(assign.shape)).clamp_min_(1.0)
    return targets, _rows(features, targets) + sums / counts[:, :, None]


def _rows(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``x[b, indices[b]]`` for every frame: ``(B, N, D)``, ``(B, M)`` -> ``(B, M, D)``."""
    return x.gather(1, indices[:, :, None].expand(-1, -1, x.shape[2]))
