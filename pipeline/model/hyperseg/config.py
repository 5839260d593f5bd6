"""HyperSeg's configuration: its own part (the FVP) on the shared ones, and its presets."""

from dataclasses import dataclass, field

from ..config import RELEASED_VOCAB, MaskLlmConfig, PreprocessSettings
from ..parts.llm import LlmSettings
from ..parts.mask_decoder import DecoderSettings
from ..parts.pixel_decoder import PixelDecoderSettings
from ..parts.swin import SwinSettings
from ..parts.vision import VisionSettings
from .fvp import FvpSettings


@dataclass(frozen=True)
class HyperSegConfig(MaskLlmConfig):
    """Every size of a HyperSeg model. The defaults are the released HyperSeg-3B."""

    fvp: FvpSettings = field(default_factory=FvpSettings)

    def _checks(self) -> list[tuple[object, object, str]]:
        return super()._checks() + [
            (self.fvp.llm_hidden, self.llm.hidden_size, "FVP output vs LLM width"),
            (self.fvp.in_channels, self.swin.feature_channels[1:], "FVP inputs vs Swin res3-res5 channels"),
        ]


def hyperseg_3b() -> HyperSegConfig:
    """The released HyperSeg-3B (vocab 50296 after the release's ``resize_token_embeddings``)."""
    return HyperSegConfig(llm=LlmSettings(vocab_size=RELEASED_VOCAB))


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


def own_parts(llm: LlmSettings, swin: SwinSettings, decoder: DecoderSettings) -> dict:
    """HyperSeg's own part sized by the released rules from the shared ones (a checkpoint stores no FVP sizes)."""
    return {"fvp": FvpSettings.for_swin(swin.embed_dim, llm_hidden=llm.hidden_size)}


PRESETS = {"hyperseg-3b": hyperseg_3b, "tiny": tiny, "bench": bench, "synth": synth}
