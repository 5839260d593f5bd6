"""Visual-token selection inside a model: SigLIP with the hook a method needs, then the kept (or merged) tokens.

Every predictor built on ``VisionTower`` + ``Projector`` + ``build_llm`` (HyperSeg, InstructSeg) calls the same
three functions: ``run_vision`` (timed as SigLIP, the hook included), ``select_visual_tokens`` (timed as
selection, with the projector after it) and, for FastV, ``kept_selection`` on each expression's kept tokens.
"""

from dataclasses import dataclass

import torch

from ...config import MODEL_METHODS, PruningConfig
from ...pruning import Selection, select_tokens
from ...pruning.coverage import measure
from ...pruning.geometry import Grid
from ..parts.vision import VisionTower
from .attention_rows import ReceivedAttention, capture_attention_input, received_attention

# Methods that rank by the attention SigLIP's selected layer pays each token, and merge by its keys.
ATTENTION_METHODS = ("visionzip",)


@dataclass
class VisionOutput:
    """SigLIP's output for a batch of frames.

    Attributes:
        features: ``(batch, N, D)`` the selected layer's output (what the projector receives).
        attention: that layer's received attention and keys, for ``ATTENTION_METHODS``; else None.
    """

    features: torch.Tensor
    attention: ReceivedAttention | None = None


@dataclass
class VisualTokens:
    """The tokens of each frame that go on to the projector.

    Attributes:
        selection: kept indices ``(batch, K)`` and coverage diagnostics (all N tokens for ``MODEL_METHODS``).
        kept: ``(batch, K, D)`` the kept features in the order of ``selection.indices`` (merged for visionzip),
            in the features' dtype.
    """

    selection: Selection
    kept: torch.Tensor


def run_vision(vision: VisionTower, pixels: torch.Tensor, method: str) -> VisionOutput:
    """SigLIP on ``(batch, 3, S, S)`` pixels (in the tower's dtype); with the received-attention hook if needed.

    "SigLIP's selected layer" is the last encoder layer the tower runs (its output is the release's
    ``hidden_states[-2]``), so the hook sits on that layer's self-attention. Hooks added after
    ``torch.compile`` are not traced, so a hooked pass runs the uncompiled tower.
    """
    if method not in ATTENTION_METHODS:
        return VisionOutput(features=vision(pixels))
    tower = getattr(vision, "_orig_mod", vision)
    attention = tower.encoder.layers[-1].self_attn
    with capture_attention_input(attention) as captured:
        features = tower(pixels)
    return VisionOutput(features=features, attention=received_attention(attention, captured.checked()))


def select_visual_tokens(vision: VisionOutput, grid: Grid, pruning: PruningConfig) -> VisualTokens:
    """Select each frame's tokens by ``pruning`` and gather (or take the merged) features.

    ``MODEL_METHODS`` (FastV) keep every token here: they prune inside the LLM.

    Raises:
        ValueError: as ``select_tokens``; e.g. visionzip without the attention of ``run_vision``.
    """
    features = vision.features
    if pruning.method in MODEL_METHODS:
        selection = select_tokens(features, grid, 1.0, "none")
    else:
        options = dict(pruning.options)
        if vision.attention is not None:
            options.update(scores=vision.attention.scores, keys=vision.attention.keys)
        selection = select_tokens(features, grid, pruning.keep, pruning.method, **options)
    if selection.features is not None:
        kept = selection.features.to(features.dtype)
    else:
        kept = features.gather(1, selection.indices[:, :, None].expand(-1, -1, features.shape[-1]))
    return VisualTokens(selection=selection, kept=kept)


def kept_selection(features: torch.Tensor, indices: torch.Tensor, grid: Grid) -> Selection:
    """A selection made elsewhere (FastV's, one row per expression) with its coverage measured; λ is NaN.

    Args:
        features: ``(batch, N, D)`` each row's frame features (any float dtype; measured in float32).
        indices: ``(batch, K)`` int64 kept raster indices, ascending.
        grid: ``(h, w)``.
    """
    cover = measure(features.float(), indices, grid)
    lam = torch.full((features.shape[0],), float("nan"), device=features.device)
    return Selection(indices=indices, feature_radius=cover.feature, grid_radius=cover.grid, lam=lam)
