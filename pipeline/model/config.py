"""The configuration both model families share: one dataclass per shared part, the presets (each family's,
through the registry) and reading a checkpoint's configs.

A released checkpoint stores only the LLM and SigLIP settings (``config.json``). The mask branch
(Swin, pixel decoder, decoder) and the preprocessing come from the release's YAML and hard-coded
values, so they default to HyperSeg-3B's (``../shared/reference/hyperseg-3b.*``) and can be
overridden by a ``mask_config.json`` and a ``siglip_preprocessor_config.json`` beside the weights, or
by keyword.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .parts.checkpoint import read_config
from .parts.llm import LlmSettings
from .parts.mask_decoder import DecoderSettings
from .parts.pixel_decoder import PixelDecoderSettings
from .parts.swin import SwinSettings
from .parts.vision import VisionSettings
from .registry import PRESETS, family, family_names

MASK_CONFIG = "mask_config.json"
SIGLIP_PREPROCESSOR = "siglip_preprocessor_config.json"


@dataclass(frozen=True)
class PreprocessSettings:
    """The two views of a frame (model.md §1.1)."""

    siglip_size: int = 384
    siglip_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    siglip_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    canvas: int = 1024  # Swin view: longest side resized to this, padded to a square (INPUT.IMAGE_SIZE)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    pad_value: float = 128.0  # detectron2 FixedSizeCrop's image pad value


@dataclass(frozen=True)
class MaskLlmConfig:
    """The parts HyperSeg and InstructSeg share (model.md §1.10): SigLIP, Phi-2 and the Swin-B Mask2Former."""

    vision: VisionSettings = field(default_factory=VisionSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    swin: SwinSettings = field(default_factory=SwinSettings)
    pixel_decoder: PixelDecoderSettings = field(default_factory=PixelDecoderSettings)
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)

    def _checks(self) -> list[tuple[object, object, str]]:
        return [
            (self.vision.llm_hidden_size, self.llm.hidden_size, "projector output vs LLM width"),
            (self.preprocess.siglip_size, self.vision.image_size, "SigLIP view vs SigLIP image size"),
            (self.decoder.mask_dim, self.pixel_decoder.mask_dim, "decoder vs pixel-decoder mask dim"),
        ]

    def __post_init__(self) -> None:
        for got, expected, what in self._checks():
            if got != expected:
                raise ValueError(f"inconsistent config, {what}: {got} != {expected}")


# The released vocabulary after HyperSeg's ``resize_token_embeddings`` (InstructSeg shares it).
RELEASED_VOCAB = 50296


def preset(name: str) -> MaskLlmConfig:
    """A named preset of any registered family: HyperSeg ``hyperseg-3b``, ``tiny``, ``bench``, ``synth``;
    InstructSeg ``instructseg``, ``instructseg-tiny``, ``instructseg-bench``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def config_from_checkpoint(directory: str | Path, **overrides) -> MaskLlmConfig:
    """The configuration of a checkpoint directory in the released layout.

    ``config.json`` gives the LLM and SigLIP; ``mask_config.json`` and ``siglip_preprocessor_config.json``,
    when present, give the mask branch and the preprocessing (else HyperSeg-3B's). Keyword overrides
    replace whole parts, e.g. ``preprocess=PreprocessSettings(canvas=512)``.
    """
    directory = Path(directory)
    config = read_config(directory)
    if config.get("model_type") not in ("mipha_phi", None):
        raise ValueError(
            f"{directory}/config.json: model_type {config.get('model_type')!r} is not HyperSeg's mipha_phi"
        )
    name = architecture(config, directory)
    tower = config.get("vision_config", {}).get("vision_tower", {})
    projector = config.get("vision_config", {}).get("mm_projector", {})
    base = MaskLlmConfig(llm=LlmSettings(vocab_size=RELEASED_VOCAB))
    vision_defaults = base.vision
    vision = VisionSettings(
        hidden_size=tower.get("hidden_size", vision_defaults.hidden_size),
        intermediate_size=tower.get("intermediate_size", vision_defaults.intermediate_size),
        num_layers=tower.get("num_hidden_layers", vision_defaults.num_layers),
        num_heads=tower.get("num_attention_heads", vision_defaults.num_heads),
        image_size=tower.get("image_size", vision_defaults.image_size),
        patch_size=tower.get("patch_size", vision_defaults.patch_size),
        hidden_act=tower.get("hidden_act", vision_defaults.hidden_act),
        layer_norm_eps=tower.get("layer_norm_eps", vision_defaults.layer_norm_eps),
        select_layer=tower.get("mm_vision_select_layer", vision_defaults.select_layer),
        llm_hidden_size=projector.get("hidden_size", config.get("hidden_size", vision_defaults.llm_hidden_size)),
    )
    if projector.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(f"projector type {projector['mm_projector_type']!r} is not supported (mlp2x_gelu only)")
    d = base.llm
    llm = LlmSettings(
        vocab_size=config.get("vocab_size", d.vocab_size),
        hidden_size=config.get("hidden_size", d.hidden_size),
        intermediate_size=config.get("intermediate_size", d.intermediate_size),
        num_layers=config.get("num_hidden_layers", d.num_layers),
        num_heads=config.get("num_attention_heads", d.num_heads),
        partial_rotary_factor=config.get("partial_rotary_factor", d.partial_rotary_factor),
        rope_theta=config.get("rope_theta", d.rope_theta),
        layer_norm_eps=config.get("layer_norm_eps", d.layer_norm_eps),
        hidden_act=config.get("hidden_act", d.hidden_act),
        max_position_embeddings=config.get("max_position_embeddings", d.max_position_embeddings),
        pad_token_id=config.get("pad_token_id", config.get("eos_token_id", d.pad_token_id)),
    )
    parts = {"vision": vision, "llm": llm}
    mask_path = directory / MASK_CONFIG
    swin = base.swin
    if mask_path.is_file():
        mask_config = json.loads(mask_path.read_text())
        swin = SwinSettings.from_mask_config(mask_config)
        parts["swin"] = swin
        parts["pixel_decoder"] = PixelDecoderSettings.from_mask_config(mask_config)
        parts["decoder"] = DecoderSettings.from_mask_config(mask_config)
        parts["preprocess"] = dataclasses.replace(
            base.preprocess,
            canvas=int(mask_config.get("INPUT", {}).get("IMAGE_SIZE", base.preprocess.canvas)),
            pixel_mean=tuple(mask_config["MODEL"].get("PIXEL_MEAN", base.preprocess.pixel_mean)),
            pixel_std=tuple(mask_config["MODEL"].get("PIXEL_STD", base.preprocess.pixel_std)),
        )
    siglip_path = directory / SIGLIP_PREPROCESSOR
    preprocess = parts.get("preprocess", base.preprocess)
    if siglip_path.is_file():
        siglip = json.loads(siglip_path.read_text())
        preprocess = dataclasses.replace(
            preprocess,
            siglip_size=int(siglip.get("size", {}).get("height", preprocess.siglip_size)),
            siglip_mean=tuple(siglip.get("image_mean", preprocess.siglip_mean)),
            siglip_std=tuple(siglip.get("image_std", preprocess.siglip_std)),
        )
    else:
        preprocess = dataclasses.replace(preprocess, siglip_size=vision.image_size)
    parts["preprocess"] = preprocess
    shared_overrides = {k: v for k, v in overrides.items() if k in parts}
    parts.update(shared_overrides)
    decoder = parts.get("decoder", base.decoder)
    chosen = family(name)
    own = chosen.own_parts(llm, swin, decoder)
    unknown = set(overrides) - set(parts) - set(own) - set(chosen.extra_fields)
    if unknown:
        raise ValueError(f"{name} has no config part(s) {sorted(unknown)}")
    own.update({k: v for k, v in overrides.items() if k not in parts})
    cls = chosen.config_class
    return cls(**parts, **own)


def architecture(config: dict, directory: str | Path = "") -> str:
    """Which registered family a released ``config.json`` is: its ``architectures`` entry (HyperSeg when unnamed,
    as the HyperSeg release writes none)."""
    names = config.get("architectures") or ["HyperSeg"]
    known = [n for n in names if n in family_names()]
    if len(known) != 1:
        raise ValueError(f"{directory}/config.json: architectures {names!r} name none or several of {family_names()}")
    return known[0]
