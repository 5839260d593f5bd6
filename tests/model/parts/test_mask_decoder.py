"""The mask decoder against the golden run of the released HyperSeg code, and the real checkpoint's key layout."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model.parts.mask_decoder import (
    UNUSED_DECODER_PREFIXES,
    DecoderSettings,
    MaskDecoder,
    convert_decoder,
)

from ..reference import REFERENCE

GOLDEN = REFERENCE / "golden-tiny"
CHECKPOINT = GOLDEN / "checkpoint"
PREFIX = "predictor."

# (intermediates file, key prefix): the image case and both video frames.
CASES = {
    "image": (GOLDEN / "reference" / "intermediates.safetensors", ""),
    "video-frame0": (GOLDEN / "video" / "intermediates.safetensors", "frames.0."),
    "video-frame1": (GOLDEN / "video" / "intermediates.safetensors", "frames.1."),
}
MASK_TOLERANCE = 1e-4  # golden README: mask logits
SEG_TOLERANCE = 1e-5  # golden README: SEG logits


def strip_prefix(weights: dict[str, torch.Tensor], prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}


def tiny_settings() -> DecoderSettings:
    return DecoderSettings.from_mask_config(json.loads((CHECKPOINT / "mask_config.json").read_text()))


def released_meta_weights() -> dict[str, torch.Tensor]:
    """Meta tensors with the real HyperSeg-3B ``predictor.*`` names, shapes and dtypes (prefix stripped)."""
    weights = {}
    with open(REFERENCE / "hyperseg-3b.state_dict.tsv", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["key"].startswith(PREFIX):
                shape = [int(size) for size in row["shape"].split("x")] if row["shape"] else []
                dtype = getattr(torch, row["dtype"])
                weights[row["key"][len(PREFIX) :]] = torch.empty(shape, dtype=dtype, device="meta")
    return weights


@pytest.fixture(scope="module")
def golden_decoder() -> MaskDecoder:
    decoder = MaskDecoder(tiny_settings()).eval()
    weights = strip_prefix(load_file(CHECKPOINT / "model.safetensors"))
    decoder.load_state_dict(convert_decoder(weights), strict=True)
    return decoder


def test_settings_defaults_and_tiny_config():
    released = DecoderSettings()
    assert released.num_layers == 9
    real_config = json.loads((REFERENCE / "hyperseg-3b.mask_config.json").read_text())
    assert DecoderSettings.from_mask_config(real_config) == released
    tiny = tiny_settings()
    assert (tiny.hidden_dim, tiny.num_heads, tiny.dim_feedforward, tiny.num_layers) == (32, 4, 64, 3)
    assert len(MaskDecoder(tiny).decoder.layers) == 3


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_predictor(golden_decoder, case):
    path, prefix = CASES[case]
    golden = load_file(path)
    with torch.no_grad():
        out = golden_decoder(
            golden[prefix + "seg_query_projector.out"],
            golden[prefix + "SEG_token_projector.out"],
            golden[prefix + "pixel_decoder.mask_features"],
            [golden[f"{prefix}pixel_decoder.multi_scale_features.{level}"] for level in range(3)],
        )
    assert out.pred_masks.shape == (1, 100, 32, 32)
    assert out.pred_seg_logits.shape == (1, 100, 1)
    torch.testing.assert_close(
        out.pred_masks, golden[prefix + "predictor.out.pred_masks"], rtol=0, atol=MASK_TOLERANCE
    )
    torch.testing.assert_close(
        out.pred_seg_logits, golden[prefix + "predictor.out.pred_SEG_logits"], rtol=0, atol=SEG_TOLERANCE
    )
    aux_in_golden = {key.split(".")[-2] for key in golden if key.startswith(prefix + "predictor.out.aux_outputs.")}
    assert len(out.aux_outputs) == len(aux_in_golden) == 3
    for index, aux in enumerate(out.aux_outputs):
        stem = f"{prefix}predictor.out.aux_outputs.{index}."
        torch.testing.assert_close(aux.pred_masks, golden[stem + "pred_masks"], rtol=0, atol=MASK_TOLERANCE)
        torch.testing.assert_close(aux.pred_seg_logits, golden[stem + "pred_SEG_logits"], rtol=0, atol=SEG_TOLERANCE)


def test_real_checkpoint_keys_load_on_meta():
    released = released_meta_weights()
    with torch.device("meta"):
        decoder = MaskDecoder(DecoderSettings())
    expected = {key: tensor.shape for key, tensor in decoder.state_dict().items()}
    converted = convert_decoder(released)
    assert {key: tensor.shape for key, tensor in converted.items()} == expected
    decoder.load_state_dict(converted, strict=True, assign=True)

    # Every released key is either loaded or explicitly dropped.
    dropped = {key for key in released if key.startswith(UNUSED_DECODER_PREFIXES)}
    unused_heads = {"query_feat", "SEG_query_embed", "box_embed", "iou_head", "reid_embed_head", "CLASS_proj"}
    assert {key.split(".")[0] for key in dropped} == unused_heads | {"REGION_proj"}
    in_proj = {key for key in released if key.endswith(("self_attn.in_proj_weight", "self_attn.in_proj_bias"))}
    assert len(converted) == len(released) - len(dropped) + 2 * len(in_proj)
    assert len(decoder.decoder.layers) == 9


def test_unknown_keys_pass_through_to_strict_loading():
    weights = strip_prefix(load_file(CHECKPOINT / "model.safetensors"))
    weights["brand_new_head.weight"] = torch.zeros(1)
    converted = convert_decoder(weights)
    assert "brand_new_head.weight" in converted
    with pytest.raises(RuntimeError, match="brand_new_head"):
        MaskDecoder(tiny_settings()).load_state_dict(converted, strict=True)


def test_self_attention_in_proj_is_split_in_q_k_v_order():
    packed = torch.arange(12.0).reshape(6, 2)
    converted = convert_decoder({"transformer_self_attention_layers.4.self_attn.in_proj_weight": packed})
    for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(converted[f"decoder.layers.4.self_attn.{name}.weight"], packed[2 * index : 2 * index + 2])


def test_rejects_bad_shapes(golden_decoder):
    queries, seg = torch.zeros(1, 100, 32), torch.zeros(1, 1, 32)
    mask_features = torch.zeros(1, 32, 32, 32)
    maps = [torch.zeros(1, 32, side, side) for side in (4, 8, 16)]
    with pytest.raises(ValueError, match="queries"):
        golden_decoder(torch.zeros(1, 99, 32), seg, mask_features, maps)
    with pytest.raises(ValueError, match="seg_embedding"):
        golden_decoder(queries, torch.zeros(2, 1, 32), mask_features, maps)
    with pytest.raises(ValueError, match="multi-scale"):
        golden_decoder(queries, seg, mask_features, maps[:2])
