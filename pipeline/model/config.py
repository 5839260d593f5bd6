"""HyperSeg configuration: one dataclass per part, the named presets, and reading a checkpoint's configs.

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

from .checkpoint import read_config
from .fvp import FvpSettings
from .llm import LlmSettings
from .mask_decoder import DecoderSettings
from .ovp import OvpSettings
from .pixel_decoder import PixelDecoderSettings
from .swin import SwinSettings
from .vision import VisionSettings
from .vmtf import VmtfSettings

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


@dataclass(frozen=True)
class HyperSegConfig(MaskLlmConfig):
    """Every size of a HyperSeg model. The defaults are the released HyperSeg-3B."""

    fvp: FvpSettings = field(default_factory=FvpSettings)

    def _checks(self) -> list[tuple[object, object, str]]:
        return super()._checks() + [
            (self.fvp.llm_hidden, self.llm.hidden_size, "FVP output vs LLM width"),
            (self.fvp.in_channels, self.swin.feature_channels[1:], "FVP inputs vs Swin res3-res5 channels"),
        ]


@dataclass(frozen=True)
class InstructSegConfig(MaskLlmConfig):
    """Every size of an InstructSeg model. The defaults are the released InstructSeg (``instructseg.*``)."""

    ovp: OvpSettings = field(default_factory=OvpSettings)
    vmtf: VmtfSettings = field(default_factory=VmtfSettings)
    reference_frames: int = 4  # reference_frame_num of the release's video evaluations

    def _checks(self) -> list[tuple[object, object, str]]:
        return super()._checks() + [
            (self.ovp.dim, self.llm.hidden_size, "OVP width vs LLM width"),
            (self.vmtf.llm_hidden, self.llm.hidden_size, "VMTF input vs LLM width"),
            (self.vmtf.in_channels, self.swin.feature_channels[-1], "VMTF input vs Swin res5 channels"),
            (self.vmtf.out_dim, self.decoder.hidden_dim, "SEG embedding vs decoder width"),
        ]


def hyperseg_3b() -> HyperSegConfig:
    """The released HyperSeg-3B (vocab 50296 after the release's ``resize_token_embeddings``)."""
    return HyperSegConfig(llm=LlmSettings(vocab_size=50296))


def tiny() -> HyperSegConfig:
    """The golden-tiny sizes (``../shared/reference/golden-tiny/hparams.json``): same code path, a few MB.

    SigLIP at image 54 / patch 2 keeps the real 27 x 27 = 729-token grid.
    """
    swin = SwinSettings(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=6)
    return HyperSegConfig(
        vision=VisionSettings(
            hidden_size=32,
            intermediate_size=64,
            num_layers=3,
            num_heads=4,
            image_size=54,
            patch_size=2,
            llm_hidden_size=64,
        ),
        llm=LlmSettings(
            vocab_size=385, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, pad_token_id=0
        ),
        swin=swin,
        pixel_decoder=PixelDecoderSettings(convs_dim=32, mask_dim=32, encoder_layers=2, encoder_heads=4),
        decoder=DecoderSettings(
            hidden_dim=32, num_heads=4, dim_feedforward=64, dec_layers=4, mask_dim=32, in_channels=32
        ),
        fvp=FvpSettings.for_swin(swin.embed_dim, llm_hidden=64),
        preprocess=PreprocessSettings(siglip_size=54, canvas=128),
    )


def bench() -> HyperSegConfig:
    """An intermediate size whose CPU forward takes about a second: for wall-clock ratios, not accuracy.

    The real 27 x 27 SigLIP grid and 100 queries; the LLM is the larger share of the work, as at real size,
    and its head width is Phi-2's 80 (partial rotary 0.4 of it must be even).
    """
    swin = SwinSettings(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=8)
    return HyperSegConfig(
        vision=VisionSettings(
            hidden_size=128,
            intermediate_size=512,
            num_layers=6,
            num_heads=4,
            image_size=54,
            patch_size=2,
            llm_hidden_size=640,
        ),
        llm=LlmSettings(
            vocab_size=1024, hidden_size=640, intermediate_size=2560, num_layers=8, num_heads=8, pad_token_id=0
        ),
        swin=swin,
        pixel_decoder=PixelDecoderSettings(convs_dim=64, mask_dim=64, encoder_layers=2, encoder_heads=4),
        decoder=DecoderSettings(
            hidden_dim=64, num_heads=4, dim_feedforward=256, dec_layers=4, mask_dim=64, in_channels=64
        ),
        fvp=FvpSettings.for_swin(swin.embed_dim, llm_hidden=640),
        preprocess=PreprocessSettings(siglip_size=54, canvas=256),
    )


def synth() -> HyperSegConfig:
    """The miniature trained on the synthetic world (``jobs/train.py``): ``tiny``'s layout, a little larger.

    SigLIP reads a 108 x 108 view in 4 x 4 patches (the real 27 x 27 grid, each token seeing 4x the pixels of
    ``tiny``'s), a 4-layer, 128-wide Phi (binding words to objects and relations needs the depth), a 768-id
    vocabulary (``pipeline.train.tokenizer``), and the mask branch on a 192 canvas with a 64-wide decoder (a third
    of the held-out targets cover under 0.5% of the image; at 128 they were a few canvas pixels wide).
    """
    swin = SwinSettings(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4)
    return HyperSegConfig(
        vision=VisionSettings(
            hidden_size=64,
            intermediate_size=256,
            num_layers=3,
            num_heads=4,
            image_size=108,
            patch_size=4,
            llm_hidden_size=128,
        ),
        llm=LlmSettings(
            vocab_size=768, hidden_size=128, intermediate_size=512, num_layers=4, num_heads=4, pad_token_id=0
        ),
        swin=swin,
        pixel_decoder=PixelDecoderSettings(convs_dim=64, mask_dim=64, encoder_layers=2, encoder_heads=4),
        decoder=DecoderSettings(
            hidden_dim=64, num_heads=4, dim_feedforward=128, dec_layers=4, mask_dim=64, in_channels=64
        ),
        fvp=FvpSettings.for_swin(swin.embed_dim, llm_hidden=128),
        preprocess=PreprocessSettings(siglip_size=108, canvas=192),
    )


def instructseg() -> InstructSegConfig:
    """The released InstructSeg: HyperSeg-3B's shared parts, the OVP at the LLM width and the VMTF at 1024."""
    return _instructseg_from(hyperseg_3b())


def instructseg_tiny() -> InstructSegConfig:
    """The golden-tiny-instructseg sizes: the shared parts are ``tiny``'s (``hparams.json``)."""
    return _instructseg_from(tiny())


def _shared(config: MaskLlmConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(MaskLlmConfig)}


def _instructseg_from(config: MaskLlmConfig) -> InstructSegConfig:
    """InstructSeg on the shared parts of ``config``, its own modules sized by the released rules."""
    return InstructSegConfig(
        **_shared(config),
        ovp=OvpSettings(dim=config.llm.hidden_size),
        vmtf=VmtfSettings.for_swin(config.swin.embed_dim, config.llm.hidden_size, config.decoder.hidden_dim),
    )


PRESETS = {
    "hyperseg-3b": hyperseg_3b,
    "tiny": tiny,
    "bench": bench,
    "synth": synth,
    "instructseg": instructseg,
    "instructseg-tiny": instructseg_tiny,
    "instructseg-bench": lambda: _instructseg_from(bench()),
}


def preset(name: str) -> MaskLlmConfig:
    """A named preset: HyperSeg ``hyperseg-3b``, ``tiny``, ``bench``; InstructSeg ``instructseg``,
    ``instructseg-tiny``, ``instructseg-bench``."""
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
    family = architecture(config, directory)
    tower = config.get("vision_config", {}).get("vision_tower", {})
    projector = config.get("vision_config", {}).get("mm_projector", {})
    base = hyperseg_3b()
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
    if family == "InstructSeg":
        own = {
            "ovp": OvpSettings(dim=llm.hidden_size),
            "vmtf": VmtfSettings.for_swin(swin.embed_dim, llm.hidden_size, decoder.hidden_dim),
        }
        cls = InstructSegConfig
    else:
        own = {"fvp": FvpSettings.for_swin(swin.embed_dim, llm_hidden=llm.hidden_size)}
        cls = HyperSegConfig
    unknown = set(overrides) - set(parts) - set(own) - ({"reference_frames"} if cls is InstructSegConfig else set())
    if unknown:
        raise ValueError(f"{family} has no config part(s) {sorted(unknown)}")
    own.update({k: v for k, v in overrides.items() if k not in parts})
    return cls(**parts, **own)


ARCHITECTURES = ("HyperSeg", "InstructSeg")


def architecture(config: dict, directory: str | Path = "") -> str:
    """Which model family a released ``config.json`` is: ``HyperSeg`` (also when unnamed) or ``InstructSeg``."""
    names = config.get("architectures") or ["HyperSeg"]
    known = [n for n in names if n in ARCHITECTURES]
    if len(known) != 1:
        raise ValueError(f"{directory}/config.json: architectures {names!r} name none or several of {ARCHITECTURES}")
    return known[0]
