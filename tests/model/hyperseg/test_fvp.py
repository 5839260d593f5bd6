"""FVP perceiver against the golden run: image case, both video frames with the carried state, and 3B shapes."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model.hyperseg.fvp import (
    FineGrainedPerceiver,
    FvpSettings,
    convert_fvp,
    fvp_weights,
    is_fvp_key,
)

from ..reference import REFERENCE

GOLDEN = REFERENCE / "golden-tiny"
# golden-tiny/video/README.md: about 1e-5 absolute on fvp.out and the temporal query in fp32.
ATOL = 1e-5


def tiny_fvp() -> FineGrainedPerceiver:
    """The golden checkpoint's FVP (Swin embed 16, Phi hidden 64), strict-loaded, eval mode."""
    module = FineGrainedPerceiver(FvpSettings.for_swin(embed_dim=16, llm_hidden=64))
    checkpoint = load_file(GOLDEN / "checkpoint" / "model.safetensors")
    module.load_state_dict(convert_fvp(fvp_weights(checkpoint)), strict=True)
    return module.eval()


def swin_levels(tensors: dict, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Golden res3, res4, res5 under an optional ``frames.{t}.`` prefix."""
    return tuple(tensors[f"{prefix}swin.features.{name}"] for name in ("res3", "res4", "res5"))


def temporal_hidden(tensors: dict, prefix: str = "") -> torch.Tensor:
    """LLM last hidden states at the flagged ``<temporal>`` positions, in order: (1, 128, hidden)."""
    hidden = tensors[f"{prefix}llm.last_hidden_state"]
    mask = tensors[f"{prefix}llm.temporal_query_mask"].bool()
    return hidden[mask].view(hidden.shape[0], -1, hidden.shape[-1])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def fvp() -> FineGrainedPerceiver:
    return tiny_fvp()


@pytest.fixture(scope="module")
def video() -> dict:
    return load_file(GOLDEN / "video" / "intermediates.safetensors")


def test_settings_defaults_are_hyperseg_3b():
    settings = FvpSettings()
    assert (settings.dim, settings.depth, settings.dim_head, settings.heads, settings.ff_mult) == (512, 3, 64, 8, 4)
    assert (settings.num_latents, settings.in_channels, settings.llm_hidden) == (128, (256, 512, 1024), 2560)
    assert FvpSettings.for_swin(embed_dim=128, llm_hidden=2560) == settings


def test_settings_reject_level_mismatch():
    with pytest.raises(ValueError, match="in_channels"):
        FvpSettings(in_channels=(256, 512))


@torch.no_grad()
def test_image_case_matches_golden(fvp):
    tensors = load_file(GOLDEN / "reference" / "intermediates.safetensors")
    out = fvp(*swin_levels(tensors))
    assert max_diff(out, tensors["fvp.out"]) <= ATOL


@torch.no_grad()
def test_video_frames_with_carried_state(fvp, video):
    latents = None  # frame 0 starts from the learned temporal_query
    for t in range(2):
        prefix = f"frames.{t}."
        levels = swin_levels(video, prefix)
        for i, media in enumerate(fvp.media_tokens(*levels)):
            assert max_diff(media, video[f"{prefix}fvp.resampler.media.{i}"]) <= ATOL
        expected_in = video[f"{prefix}fvp.latents_in"]
        used = fvp.initial_latents(1) if latents is None else latents
        assert max_diff(used, expected_in) <= ATOL
        resampled = fvp.mgvp_layers(fvp.media_tokens(*levels), used)
        assert max_diff(resampled, video[f"{prefix}fvp.resampler.out"]) <= ATOL
        assert max_diff(fvp(*levels, latents=latents), video[f"{prefix}fvp.out"]) <= ATOL

        hidden = temporal_hidden(video, prefix)
        assert torch.equal(hidden, video[f"{prefix}temporal_query.llm_hidden"])
        latents = fvp.read_state(hidden)
        assert max_diff(latents, video[f"{prefix}temporal_query.out"]) <= ATOL


@torch.no_grad()
def test_frame1_needs_the_carried_state(fvp, video):
    """Running frame 1 from the parameter must not reproduce the golden: the carry is observable."""
    out = fvp(*swin_levels(video, "frames.1."))
    assert max_diff(out, video["frames.1.fvp.out"]) > 1e-2


@torch.no_grad()
def test_bad_inputs_raise(fvp, video):
    res3, res4, res5 = swin_levels(video, "frames.0.")
    with pytest.raises(ValueError, match="level 1"):
        fvp(res3, res5, res5)
    with pytest.raises(ValueError, match="latents"):
        fvp(res3, res4, res5, latents=torch.zeros(1, 127, 64))
    with pytest.raises(ValueError, match="temporal hidden"):
        fvp.read_state(torch.zeros(1, 128, 32))


def meta_state_dict(tsv: Path, keep) -> dict[str, torch.Tensor]:
    """Meta tensors with the shapes listed in a ``key\\tshape\\tdtype`` state-dict table."""
    tensors = {}
    for line in tsv.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        if keep(key):
            dims = [int(d) for d in shape.split("x")] if shape else []
            tensors[key] = torch.empty(dims, dtype=getattr(torch, dtype), device="meta")
    return tensors


def test_hyperseg_3b_keys_load_on_meta():
    weights = meta_state_dict(REFERENCE / "hyperseg-3b.state_dict.tsv", is_fvp_key)
    assert "temporal_query" in weights and "temporal_query_project.weight" in weights
    with torch.device("meta"):
        module = FineGrainedPerceiver(FvpSettings())
    module.load_state_dict(convert_fvp(weights), strict=True)
    assert module.temporal_query.shape == (128, 512)
    with torch.device("meta"):
        levels = (torch.empty(1, 256, 128, 128), torch.empty(1, 512, 64, 64), torch.empty(1, 1024, 32, 32))
        out = module(*levels)
        state = module.read_state(torch.empty(1, 128, 2560))
    assert out.shape == (1, 128, 2560) and state.shape == (1, 128, 512)


def test_convert_passes_unknown_keys_through():
    weights = {"temporal_query": torch.empty(128, 512, device="meta"), "stray.weight": torch.empty(1, device="meta")}
    converted = convert_fvp(weights)
    assert set(converted) == {"temporal_query", "stray.weight"}
    assert not is_fvp_key("temporal_query_projector.weight") and is_fvp_key("temporal_query_project.bias")
