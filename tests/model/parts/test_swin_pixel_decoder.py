"""Swin mask backbone and pixel decoder against the golden run, and their converters against HyperSeg-3B's keys."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model.parts.pixel_decoder import (
    PixelDecoder,
    PixelDecoderOutput,
    PixelDecoderSettings,
    convert_pixel_decoder,
)
from pipeline.model.parts.swin import FEATURE_NAMES, MaskBackbone, SwinSettings, convert_swin

from ..reference import REFERENCE

GOLDEN = REFERENCE / "golden-tiny"
SWIN_PREFIX = "model.vision_tower_mask."
PIXEL_DECODER_PREFIX = "pixel_decoder."
# The README tolerance for features of this size; with eager attention and 1 thread the measured difference is 0.
ATOL = 1e-5

# case -> (directory, key prefix of that frame)
CASES = {"image": ("reference", ""), "video.frame0": ("video", "frames.0."), "video.frame1": ("video", "frames.1.")}
TSV_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64}


# ---------------------------------------------------------------- helpers


def strip_prefix(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def meta_weights_from_tsv(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Meta tensors named and shaped as the released checkpoint's `prefix*` keys (prefix stripped)."""
    weights = {}
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype"]
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        if key.startswith(prefix):
            dims = [int(d) for d in shape.split("x")] if shape else []
            weights[key.removeprefix(prefix)] = torch.empty(dims, dtype=TSV_DTYPES[dtype], device="meta")
    assert weights, f"no {prefix}* keys in {path}"
    return weights


def load_golden_case(case: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(inputs, intermediates) of one golden case, frame prefix stripped."""
    directory, prefix = CASES[case]
    inputs = strip_prefix(load_file(GOLDEN / directory / "inputs.safetensors"), prefix)
    intermediates = strip_prefix(load_file(GOLDEN / directory / "intermediates.safetensors"), prefix)
    return inputs, intermediates


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def assert_loads_strictly(module: torch.nn.Module, converted: dict[str, torch.Tensor]) -> None:
    """Every converted tensor has a slot of the same shape, and every slot is filled."""
    expected = module.state_dict()
    assert sorted(converted) == sorted(expected)
    mismatched = {
        k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in converted.items() if v.shape != expected[k].shape
    }
    assert not mismatched
    module.load_state_dict(converted, strict=True, assign=True)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """The golden run used 1 thread; with 2, conv reductions reorder (mask_features then differ by ~5e-7)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "checkpoint" / "model.safetensors")


@pytest.fixture(scope="module")
def tiny_mask_config() -> dict:
    return json.loads((GOLDEN / "checkpoint" / "mask_config.json").read_text())


@pytest.fixture(scope="module")
def tiny_swin(checkpoint: dict[str, torch.Tensor], tiny_mask_config: dict) -> MaskBackbone:
    swin = MaskBackbone(SwinSettings.from_mask_config(tiny_mask_config), attn_implementation="eager").eval()
    swin.load_state_dict(convert_swin(strip_prefix(checkpoint, SWIN_PREFIX)), strict=True)
    return swin


@pytest.fixture(scope="module")
def tiny_pixel_decoder(checkpoint: dict[str, torch.Tensor], tiny_mask_config: dict) -> PixelDecoder:
    settings = PixelDecoderSettings.from_mask_config(tiny_mask_config)
    decoder = PixelDecoder(settings, SwinSettings.from_mask_config(tiny_mask_config).feature_channels).eval()
    decoder.load_state_dict(convert_pixel_decoder(strip_prefix(checkpoint, PIXEL_DECODER_PREFIX)), strict=True)
    return decoder


def assert_pixel_decoder_matches(out: PixelDecoderOutput, golden: dict[str, torch.Tensor]) -> None:
    assert max_abs_diff(out.mask_features, golden["pixel_decoder.mask_features"]) <= ATOL
    assert len(out.multi_scale_features) == 3
    for level, feature in enumerate(out.multi_scale_features):
        assert max_abs_diff(feature, golden[f"pixel_decoder.multi_scale_features.{level}"]) <= ATOL
    # The release also returns the lowest-resolution encoder map on its own; it is level 0.
    assert max_abs_diff(out.multi_scale_features[0], golden["pixel_decoder.transformer_encoder_features"]) <= ATOL


# ---------------------------------------------------------------- settings


def test_swin_settings_from_configs() -> None:
    hparams = json.loads((GOLDEN / "hparams.json").read_text())["swin"]
    tiny = SwinSettings.from_mask_config(json.loads((GOLDEN / "checkpoint" / "mask_config.json").read_text()))
    assert (tiny.embed_dim, list(tiny.depths), list(tiny.num_heads), tiny.window_size) == (
        hparams["embed_dim"],
        hparams["depths"],
        hparams["num_heads"],
        hparams["window_size"],
    )
    assert (tiny.patch_size, tiny.mlp_ratio, tiny.qkv_bias) == (
        hparams["patch_size"],
        hparams["mlp_ratio"],
        hparams["qkv_bias"],
    )
    assert tiny.feature_channels == (16, 32, 64, 128)
    real = json.loads((REFERENCE / "hyperseg-3b.mask_config.json").read_text())
    assert SwinSettings.from_mask_config(real) == SwinSettings()
    assert SwinSettings().feature_channels == (128, 256, 512, 1024)


def test_pixel_decoder_settings_from_configs(tiny_mask_config: dict) -> None:
    tiny = PixelDecoderSettings.from_mask_config(tiny_mask_config)
    assert (tiny.convs_dim, tiny.mask_dim, tiny.encoder_layers, tiny.encoder_heads) == (32, 32, 2, 4)
    real = json.loads((REFERENCE / "hyperseg-3b.mask_config.json").read_text())
    assert PixelDecoderSettings.from_mask_config(real) == PixelDecoderSettings()


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="stages"):
        SwinSettings(depths=(2, 2, 2))
    with pytest.raises(ValueError, match="heads"):
        SwinSettings(embed_dim=20, num_heads=(3, 8, 16, 32))
    with pytest.raises(ValueError, match="attn_implementation"):
        MaskBackbone(SwinSettings(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)), "flash")
    with pytest.raises(ValueError, match="n_points"):
        PixelDecoderSettings(n_points=8)
    with pytest.raises(ValueError, match="GroupNorm"):
        PixelDecoderSettings(convs_dim=48)


# ---------------------------------------------------------------- Swin


@pytest.mark.parametrize("case", sorted(CASES))
def test_swin_matches_golden(case: str, tiny_swin: MaskBackbone, single_thread: None) -> None:
    inputs, golden = load_golden_case(case)
    with torch.no_grad():
        features = tiny_swin(inputs["images"])
    assert list(features) == list(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        assert max_abs_diff(features[name], golden[f"swin.features.{name}"]) <= ATOL


def test_swin_sdpa_stays_within_tolerance(checkpoint: dict[str, torch.Tensor], tiny_mask_config: dict) -> None:
    swin = MaskBackbone(SwinSettings.from_mask_config(tiny_mask_config), attn_implementation="sdpa").eval()
    swin.load_state_dict(convert_swin(strip_prefix(checkpoint, SWIN_PREFIX)), strict=True)
    inputs, golden = load_golden_case("image")
    with torch.no_grad():
        features = swin(inputs["images"])
    for name in FEATURE_NAMES:
        assert max_abs_diff(features[name], golden[f"swin.features.{name}"]) <= ATOL


def test_swin_rejects_bad_pixels(tiny_swin: MaskBackbone) -> None:
    with pytest.raises(ValueError, match="pixels"):
        tiny_swin(torch.zeros(3, 128, 128))


def test_convert_swin_on_hyperseg_3b_keys() -> None:
    released = meta_weights_from_tsv(REFERENCE / "hyperseg-3b.state_dict.tsv", SWIN_PREFIX)
    converted = convert_swin(released)
    dropped = {k for k in released if k.endswith("attn.relative_position_index")}
    assert len(dropped) == sum(SwinSettings().depths)
    # Every released key is either used or explicitly dropped: the qkv tensors become three each.
    num_qkv = sum(".attn.qkv." in k for k in released)
    assert len(converted) == len(released) - len(dropped) + 2 * num_qkv
    with torch.device("meta"):
        swin = MaskBackbone(SwinSettings())
    assert_loads_strictly(swin, converted)


def test_convert_swin_splits_qkv_and_passes_unknown_keys() -> None:
    qkv = torch.arange(12.0).view(12, 1)
    converted = convert_swin({"layers.0.blocks.1.attn.qkv.weight": qkv, "some.unknown": torch.zeros(1)})
    prefix = "backbone.swin.encoder.layers.0.blocks.1.attention."
    assert torch.equal(converted[prefix + "q_proj.weight"], qkv[0:4])
    assert torch.equal(converted[prefix + "k_proj.weight"], qkv[4:8])
    assert torch.equal(converted[prefix + "v_proj.weight"], qkv[8:12])
    assert "some.unknown" in converted


# ---------------------------------------------------------------- pixel decoder


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixel_decoder_matches_golden(case: str, tiny_pixel_decoder: PixelDecoder, single_thread: None) -> None:
    _, golden = load_golden_case(case)
    features = {name: golden[f"swin.features.{name}"] for name in FEATURE_NAMES}
    with torch.no_grad():
        out = tiny_pixel_decoder(features)
    assert_pixel_decoder_matches(out, golden)


@pytest.mark.parametrize("case", sorted(CASES))
def test_swin_then_pixel_decoder_from_golden_images(
    case: str, tiny_swin: MaskBackbone, tiny_pixel_decoder: PixelDecoder, single_thread: None
) -> None:
    inputs, golden = load_golden_case(case)
    with torch.no_grad():
        out = tiny_pixel_decoder(tiny_swin(inputs["images"]))
    assert_pixel_decoder_matches(out, golden)


def _bias_effects(convs_dim: int) -> tuple[float, float]:
    """Max change of random-weight `mask_features` when `adapter_1.0.bias` / `layer_1.0.bias` are zeroed."""
    torch.manual_seed(0)
    channels = (16, 32, 64, 128)
    decoder = PixelDecoder(PixelDecoderSettings(convs_dim=convs_dim, mask_dim=convs_dim, encoder_layers=1), channels)
    decoder.eval()
    generator = torch.Generator().manual_seed(0)
    features = {
        name: torch.randn(1, c, side, side, generator=generator)
        for name, c, side in zip(FEATURE_NAMES, channels, (16, 8, 4, 2), strict=True)
    }
    effects = []
    with torch.no_grad():
        reference = decoder(features).mask_features
        for name in ("adapter_1.0.bias", "layer_1.0.bias"):
            bias = decoder.get_parameter(name)
            saved = bias.clone()
            bias.zero_()
            effects.append(max_abs_diff(decoder(features).mask_features, reference))
            bias.copy_(saved)
    return effects[0], effects[1]


def test_fpn_biases_are_used_at_real_width() -> None:
    # GroupNorm(32, 256): 8 channels per group, so a per-channel bias before it does not cancel.
    lateral, output = _bias_effects(convs_dim=256)
    assert lateral > 1e-3 and output > 1e-3


def test_fpn_biases_cancel_at_golden_width() -> None:
    # GroupNorm(32, 32): 1 channel per group removes any per-channel bias, which is why the golden run cannot
    # tell whether the biases are loaded, and the real-width test above is needed.
    lateral, output = _bias_effects(convs_dim=32)
    assert lateral <= 1e-5 and output <= 1e-5


def test_pixel_decoder_has_the_hyperseg_fpn(tiny_pixel_decoder: PixelDecoder) -> None:
    assert tiny_pixel_decoder.adapter_1[0].bias is not None and tiny_pixel_decoder.layer_1[0].bias is not None
    assert isinstance(tiny_pixel_decoder.adapter_1[-1], torch.nn.ReLU)
    # transformers' forward iterates these lists; they must be the modified modules.
    assert tiny_pixel_decoder.lateral_convolutions[0] is tiny_pixel_decoder.adapter_1
    assert tiny_pixel_decoder.output_convolutions[0] is tiny_pixel_decoder.layer_1


def test_pixel_decoder_rejects_bad_features(tiny_pixel_decoder: PixelDecoder) -> None:
    _, golden = load_golden_case("image")
    features = {name: golden[f"swin.features.{name}"] for name in FEATURE_NAMES}
    with pytest.raises(ValueError, match="res2"):
        tiny_pixel_decoder({k: v for k, v in features.items() if k != "res2"})
    with pytest.raises(ValueError, match="res5"):
        tiny_pixel_decoder({**features, "res5": features["res4"]})


def test_convert_pixel_decoder_on_hyperseg_3b_keys() -> None:
    released = meta_weights_from_tsv(REFERENCE / "hyperseg-3b.state_dict.tsv", PIXEL_DECODER_PREFIX)
    converted = convert_pixel_decoder(released)
    assert len(converted) == len(released)  # pure renames, nothing dropped
    with torch.device("meta"):
        decoder = PixelDecoder(PixelDecoderSettings(), SwinSettings().feature_channels)
    assert_loads_strictly(decoder, converted)


def test_convert_pixel_decoder_passes_unknown_keys() -> None:
    converted = convert_pixel_decoder(
        {"transformer.encoder.layers.0.norm1.weight": torch.ones(1), "x.y": torch.ones(1)}
    )
    assert set(converted) == {"encoder.layers.0.self_attn_layer_norm.weight", "x.y"}
