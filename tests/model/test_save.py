"""Saving in the released layout, the inverse of loading: checked against the golden checkpoints bit for bit."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pipeline.model import PRESETS, HyperSeg, HyperSegConfig, InstructSegConfig, config_from_checkpoint, load, preset
from pipeline.model.config import MaskLlmConfig, PreprocessSettings
from pipeline.model.hyperseg.fvp import FvpSettings
from pipeline.model.instructseg.ovp import OvpSettings
from pipeline.model.instructseg.vmtf import VmtfSettings
from pipeline.model.parts.checkpoint import CheckpointError, map_weights, parameters_on_meta
from pipeline.model.parts.llm import LlmSettings
from pipeline.model.parts.mask_decoder import DecoderSettings
from pipeline.model.parts.mask_llm import MaskLlm
from pipeline.model.parts.pixel_decoder import PixelDecoderSettings
from pipeline.model.parts.postprocess import score_queries, top1
from pipeline.model.parts.prompt import build_tiny_tokenizer, load_tokenizer
from pipeline.model.parts.swin import SwinSettings
from pipeline.model.parts.vision import VisionSettings
from pipeline.model.registry import model_for
from pipeline.model.save import check_round_trip, released_configs, save_pretrained

from .parts.test_checkpoint import released_meta_weights
from .reference import REFERENCE, rgb

GOLDEN = {
    "hyperseg": (REFERENCE / "golden-tiny" / "checkpoint", REFERENCE / "golden-tiny" / "reference" / "image.png"),
    "instructseg": (
        REFERENCE / "golden-tiny-instructseg" / "checkpoint",
        REFERENCE / "golden-tiny-instructseg" / "image" / "image.png",
    ),
}
INSTRUCTION = "the red box on the left"


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (``torch.equal`` would also accept -0.0 for 0.0)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def assert_same_state(one: nn.Module, two: nn.Module) -> None:
    a, b = one.state_dict(), two.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not same_bits(a[k], b[k])] == []


def read_by_inference(model: MaskLlm, weights: dict[str, torch.Tensor]) -> set[str]:
    """The released keys the forward mapping loads into ``model`` (the others are dropped), key by key."""
    return {k for k, v in weights.items() if map_weights({k: v}, model.routes(), model.dropped_prefixes)[0]}


@pytest.mark.parametrize("family", GOLDEN)
def test_released_state_dict_is_the_golden_file(family):
    checkpoint, _ = GOLDEN[family]
    model = MaskLlm.from_pretrained(checkpoint)
    golden = load_file(checkpoint / "model.safetensors")
    expected = read_by_inference(model, golden)
    assert "lm_head.weight" in golden and "lm_head.weight" not in expected  # something is dropped
    released = model.released_state_dict()
    assert released.keys() == expected
    assert [k for k in expected if not same_bits(released[k], golden[k])] == []


def test_real_size_keys_are_the_released_keys_inference_reads():
    """HyperSeg-3B on meta tensors: every released key inference reads is written, with its released shape."""
    with parameters_on_meta():
        model = HyperSeg(preset("hyperseg-3b"))
    weights = released_meta_weights("hyperseg-3b.state_dict.tsv")
    released = model.released_state_dict()
    assert released.keys() == read_by_inference(model, weights)
    assert [k for k in released if released[k].shape != weights[k].shape] == []


def run(predictor, image):
    """Full-resolution mask logits, SEG logits and the top-1 query for the golden image and instruction.

    The parameters are first copied to fresh allocations. Loaded tensors sit wherever safetensors' buffers
    happened to be allocated, and CPU kernels round differently with the data's alignment (SEG logits moved by
    9.5e-7 between two bit-identical state dicts); fresh torch allocations are all 64-byte aligned.
    """
    with torch.no_grad():
        for parameter in predictor.model.parameters():
            parameter.data = parameter.data.clone()
    with torch.inference_mode():
        encoded = predictor.encode([image])
        decoded = predictor.decode(encoded, predictor.prefill(encoded, [[INSTRUCTION]], "referring"))
        logits = predictor.full_resolution(encoded, 0, decoded.pred_masks[0])
        seg = decoded.pred_seg_logits[0]
    return logits, seg, top1(logits, score_queries(logits, seg))


@pytest.mark.parametrize("family", GOLDEN)
def test_saved_golden_loads_and_predicts_bit_identically(family, tmp_path):
    checkpoint, image_path = GOLDEN[family]
    image = rgb(image_path)
    before = load.from_pretrained(checkpoint)
    save_pretrained(before.model, before.tokenizer, tmp_path)
    after = load.from_pretrained(tmp_path)
    assert type(after.model) is type(before.model) and after.model.config == before.model.config
    assert_same_state(before.model, after.model)
    assert after.tokenizer.encode(INSTRUCTION + " [SEG]") == before.tokenizer.encode(INSTRUCTION + " [SEG]")
    # The BPE's own files, as in the released layout, say the same as the golden ones.
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads((checkpoint / "vocab.json").read_text())
    merges = [(path / "merges.txt").read_text().splitlines() for path in (tmp_path, checkpoint)]
    assert [m for m in merges[0] if not m.startswith("#")] == [m for m in merges[1] if not m.startswith("#")]
    logits, seg, best = run(before, image)
    logits_after, seg_after, best_after = run(after, image)
    assert same_bits(logits, logits_after) and same_bits(seg, seg_after)
    assert (best.query, best.score) == (best_after.query, best_after.score)
    assert not list(tmp_path.glob(".*"))  # no temporary file is left behind


def custom_config(family: str) -> MaskLlmConfig:
    """Sizes no preset has: SigLIP 108 / patch 4, the last SigLIP layer, LLM 128 x 4 layers, Swin window 4 and MLP
    ratio 2, decoder 64 wide over a 32-wide pixel decoder (so with input projections)."""
    shared = {
        "vision": VisionSettings(
            hidden_size=32,
            intermediate_size=64,
            num_layers=3,
            num_heads=4,
            image_size=108,
            patch_size=4,
            select_layer=-1,
            llm_hidden_size=128,
        ),
        "llm": LlmSettings(
            vocab_size=400, hidden_size=128, intermediate_size=256, num_layers=4, num_heads=4, pad_token_id=0
        ),
        "swin": SwinSettings(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4, mlp_ratio=2.0),
        "pixel_decoder": PixelDecoderSettings(convs_dim=32, mask_dim=32, encoder_layers=1, encoder_heads=4),
        "decoder": DecoderSettings(
            hidden_dim=64, num_heads=4, dim_feedforward=96, dec_layers=3, mask_dim=32, in_channels=32
        ),
        "preprocess": PreprocessSettings(siglip_size=108, canvas=128),
    }
    if family == "hyperseg":
        return HyperSegConfig(**shared, fvp=FvpSettings.for_swin(16, llm_hidden=128))
    return InstructSegConfig(**shared, ovp=OvpSettings(dim=128), vmtf=VmtfSettings.for_swin(16, 128, 64))


@pytest.mark.parametrize("name", ["tiny", "instructseg-tiny", "custom-hyperseg", "custom-instructseg"])
def test_config_and_weights_round_trip(name, tmp_path):
    if name.startswith("custom-"):
        config = custom_config(name.removeprefix("custom-"))
        torch.manual_seed(0)
        model = model_for(config)(config)
        tokenizer = load_tokenizer(build_tiny_tokenizer(tmp_path / "tokenizer"))
    else:
        predictor = load.from_preset(name, seed=3)
        model, tokenizer, config = predictor.model, predictor.tokenizer, preset(name)
    assert model.config == config
    save_pretrained(model, tokenizer, tmp_path / "saved")
    assert config_from_checkpoint(tmp_path / "saved") == config
    assert_same_state(model, MaskLlm.from_pretrained(tmp_path / "saved"))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_config_round_trips(name, tmp_path):
    """The config files of every preset, the large ones included (their weights: next test and the 3B one above)."""
    config = preset(name)
    files = released_configs(config)
    check_round_trip(config, files)
    for file_name, content in files.items():
        (tmp_path / file_name).write_text(json.dumps(content))
    assert config_from_checkpoint(tmp_path) == config


@pytest.mark.parametrize("name", ["bench", "instructseg-bench"])
def test_bench_weights_have_released_names(name):
    """Names and shapes only, on meta tensors: ``released_state_dict`` checks that they load back onto the model."""
    with parameters_on_meta():
        model = model_for(preset(name))(preset(name))
    released = model.released_state_dict()
    assert sum(t.numel() for t in released.values()) == sum(t.numel() for t in model.state_dict().values())


def test_sharded_bfloat16_save_then_one_file_over_it(tmp_path):
    checkpoint, _ = GOLDEN["hyperseg"]
    model, tokenizer = MaskLlm.from_pretrained(checkpoint), load_tokenizer(checkpoint)
    save_pretrained(model, tokenizer, tmp_path, dtype=torch.bfloat16, max_shard_bytes=1_000_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3 and (tmp_path / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert_same_state(model.to(torch.bfloat16), MaskLlm.from_pretrained(tmp_path, dtype=torch.bfloat16))
    # One file over the shards: the index (which a loader prefers) and the shards go.
    model = MaskLlm.from_pretrained(checkpoint)
    save_pretrained(model, tokenizer, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]
    assert_same_state(model, MaskLlm.from_pretrained(tmp_path))


def test_a_crash_while_writing_leaves_the_old_weights(tmp_path, monkeypatch):
    checkpoint, _ = GOLDEN["hyperseg"]
    model, tokenizer = MaskLlm.from_pretrained(checkpoint), load_tokenizer(checkpoint)
    save_pretrained(model, tokenizer, tmp_path)
    old = (tmp_path / "model.safetensors").read_bytes()

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("pipeline.model.parts.checkpoint.save_file", crash)
    with torch.no_grad():
        model.seg_query.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == old
    assert not list(tmp_path.glob(".*"))


def test_a_config_the_files_cannot_carry_is_refused_before_writing(tmp_path):
    predictor = load.from_preset("tiny")
    model = predictor.model
    # The Swin view's pad value is not in any checkpoint file (the release hard-codes detectron2's 128).
    model.config = dataclasses.replace(
        model.config, preprocess=dataclasses.replace(model.config.preprocess, pad_value=0.0)
    )
    with pytest.raises(ValueError, match=r"preprocess\.pad_value: 0\.0 would load as 128\.0"):
        save_pretrained(model, predictor.tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unclaimed_parameters_and_meta_tensors_are_refused(tmp_path):
    predictor = load.from_preset("tiny")
    predictor.model.extra = nn.Parameter(torch.zeros(2))
    with pytest.raises(CheckpointError, match=r"1 keys no route claims \['extra'\]"):
        predictor.model.released_state_dict()
    with parameters_on_meta():
        model = model_for(preset("tiny"))(preset("tiny"))
    with pytest.raises(ValueError, match="meta device"):
        save_pretrained(model, predictor.tokenizer, tmp_path)


def test_compiled_submodules_keep_their_released_names():
    """``torch.compile`` wraps a submodule as ``<name>._orig_mod``; a stand-in wrapper has the same state-dict keys
    without paying for dynamo's import."""

    class Compiled(nn.Module):
        def __init__(self, module: nn.Module):
            super().__init__()
            self._orig_mod = module

    model = load.from_preset("tiny").model
    plain = model.released_state_dict()
    model.vision, model.llm = Compiled(model.vision), Compiled(model.llm)
    assert any("._orig_mod." in k for k in model.state_dict())
    wrapped = model.released_state_dict()
    assert wrapped.keys() == plain.keys() and all(same_bits(wrapped[k], plain[k]) for k in plain)
