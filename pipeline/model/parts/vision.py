"""The LLM's eyes: SigLIP up to the selected layer, and the mlp2x_gelu projector.

HyperSeg (congvvc/HyperSeg@5cfcf52, ``SiglipVisionTower``) takes ``hidden_states[-2]`` of
SigLIP-so400m: the output of layer L-1, before ``post_layernorm``. The last layer and the MAP head are
computed there and thrown away; here they are never built (model.md §1.2).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipVisionEmbeddings

# Released SigLIP keys that inference never uses: the MAP head and the final norm come after the
# selected layer (the last encoder layer's keys are dropped by index in ``convert_vision``).
UNUSED_SIGLIP_PREFIXES = ("post_layernorm.", "head.")


@dataclass(frozen=True)
class VisionSettings:
    """SigLIP-so400m-patch14-384 as in HyperSeg-3B, and the projector to the LLM width."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    image_size: int = 384
    patch_size: int = 14
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    select_layer: int = -2
    llm_hidden_size: int = 2560

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def layers_run(self) -> int:
        """Encoder layers needed for ``hidden_states[select_layer]`` (hidden_states[0] is the embedding)."""
        return self.num_layers + 1 + self.select_layer if self.select_layer < 0 else self.select_layer


class VisionTower(nn.Module):
    """SigLIP embeddings and the first ``layers_run`` encoder layers: ``(B, 3, S, S) -> (B, N, hidden)``."""

    def __init__(self, settings: VisionSettings, attn_implementation: str = "sdpa"):
        super().__init__()
        if not 0 < settings.layers_run <= settings.num_layers:
            raise ValueError(f"select_layer {settings.select_layer} is outside a {settings.num_layers}-layer SigLIP")
        config = SiglipVisionConfig(
            hidden_size=settings.hidden_size,
            intermediate_size=settings.intermediate_size,
            num_hidden_layers=settings.layers_run,
            num_attention_heads=settings.num_heads,
            image_size=settings.image_size,
            patch_size=settings.patch_size,
            hidden_act=settings.hidden_act,
            layer_norm_eps=settings.layer_norm_eps,
            attn_implementation=attn_implementation,
        )
        self.embeddings = SiglipVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """SigLIP features of the selected layer, ``(batch, 3, S, S) -> (batch, N, hidden)``."""
        return self.encoder(inputs_embeds=self.embeddings(pixels)).last_hidden_state


class Projector(nn.Sequential):
    """``mlp2x_gelu``: Linear, GELU (erf), Linear (HyperSeg ``multimodal_projector/builder.py``)."""

    def __init__(self, settings: VisionSettings):
        super().__init__(
            nn.Linear(settings.hidden_size, settings.llm_hidden_size),
            nn.GELU(),
            nn.Linear(settings.llm_hidden_size, settings.llm_hidden_size),
        )


def convert_vision(weights: dict[str, torch.Tensor], settings: VisionSettings) -> dict[str, torch.Tensor]:
    """Released ``model.vision_tower.vision_model.*`` tensors (prefix stripped) to ``VisionTower`` keys.

    The names are transformers' own; only the layers after the selected one, the final norm and the
    MAP head are dropped, since inference never runs them.
    """
    out = {}
    for key, value in weights.items():
        if key.startswith(UNUSED_SIGLIP_PREFIXES):
            continue
        if key.startswith("encoder.layers."):
            if int(key.split(".")[2]) >= settings.layers_run:
                continue
        out[key] = value
    return out


def released_vision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``VisionTower`` state (``vision.`` stripped) -> released ``model.vision_tower.vision_model.*`` names.

    The names are the same; the layers after the selected one, ``post_layernorm`` and the MAP head are not in the
    module, so they are not written (a saved checkpoint is complete for this project's loader, not for the
    released code's strict one).
    """
    return dict(state)
