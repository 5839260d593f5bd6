"""The definition of "HyperSeg inference works": the golden-tiny run, reproduced end to end through the predictor.

Checkpoint, image, instruction and every stage come from ``../shared/reference/golden-tiny/`` (what the
official HyperSeg code computes). Tolerances are the README's: mask logits 1e-4, SEG logits 1e-5, same
top-1 query; the other stages within 1e-5. Eager attention and one thread, as the golden run.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.model import HyperSegPredictor
from pipeline.model.parts.preprocess import siglip_view

from ..reference import GOLDEN, rgb


@pytest.fixture(scope="module")
def predictor():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden run's reduction order
    yield HyperSegPredictor.from_pretrained(GOLDEN / "checkpoint", attn_implementation="eager")
    torch.set_num_threads(threads)


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f"max abs diff {diff} > {atol}"


def check_frame(predictor, image, encoded, prefill, decoded, inter, out, prefix=""):
    """Every stored stage of one frame, then the chosen mask."""
    model = predictor.model
    view = siglip_view(image, model.config.preprocess.siglip_size)
    close(model.encode_vision(view[None]), inter[f"{prefix}siglip.selected"], 1e-5)
    for level in ("res2", "res3", "res4", "res5"):
        close(encoded.swin[level], inter[f"{prefix}swin.features.{level}"], 1e-5)
    close(encoded.pixel.mask_features, inter[f"{prefix}pixel_decoder.mask_features"], 1e-5)
    for i, feature in enumerate(encoded.pixel.multi_scale_features):
        close(feature, inter[f"{prefix}pixel_decoder.multi_scale_features.{i}"], 1e-5)
    close(encoded.image_tokens, inter[f"{prefix}mm_projector.out"], 1e-5)
    close(model.seg_query_projector(prefill.llm.seg), inter[f"{prefix}seg_query_projector.out"], 1e-5)
    close(model.SEG_token_projector(prefill.llm.refer), inter[f"{prefix}SEG_token_projector.out"], 1e-5)
    close(decoded.pred_masks, inter[f"{prefix}predictor.out.pred_masks"], 1e-4)
    close(decoded.pred_seg_logits, inter[f"{prefix}predictor.out.pred_SEG_logits"], 1e-5)
    for i, aux in enumerate(decoded.aux_outputs):
        close(aux.pred_masks, inter[f"{prefix}predictor.out.aux_outputs.{i}.pred_masks"], 1e-4)
        close(aux.pred_seg_logits, inter[f"{prefix}predictor.out.aux_outputs.{i}.pred_SEG_logits"], 1e-5)
    # mask_logits_fullres_all is stored in query order.
    close(predictor.full_resolution(encoded, 0, decoded.pred_masks[0]), out[f"{prefix}mask_logits_fullres_all"], 1e-4)


def test_image_case(predictor):
    inter = load_file(GOLDEN / "reference" / "intermediates.safetensors")
    out = load_file(GOLDEN / "reference" / "outputs.safetensors")
    image = rgb(GOLDEN / "reference" / "image.png")
    with torch.inference_mode():
        encoded = predictor.encode([image])
        prefill = predictor.prefill(encoded, [["the red box on the left"]], "referring")
        decoded = predictor.decode(encoded, prefill)
        check_frame(predictor, image, encoded, prefill, decoded, inter, out)
    assert prefill.llm.lengths.tolist() == [inter["llm.inputs_embeds"].shape[1]] == [1101]
    (result,) = predictor.predict(image, ["the red box on the left"])
    assert result.query == 69
    assert result.score == pytest.approx(0.6157612800598145, abs=1e-6)
    assert result.mask.shape == (80, 96)
    assert np.array_equal(result.mask, out["top1_mask_binary"].numpy().astype(bool))
    assert len(result.kept) == 729 and result.sequence_length == 1101


def test_video_case_carries_the_temporal_state(predictor):
    video = GOLDEN / "video"
    inter = load_file(video / "intermediates.safetensors")
    out = load_file(video / "outputs.safetensors")
    instruction = (video / "instruction.txt").read_text().strip()
    frames = [rgb(video / f"frame{t}.png") for t in range(2)]
    state = None
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            prefix = f"frames.{t}."
            encoded = predictor.encode([frame])
            prefill = predictor.prefill(encoded, [[instruction]], "video", state)
            decoded = predictor.decode(encoded, prefill)
            check_frame(predictor, frame, encoded, prefill, decoded, inter, out, prefix)
            close(prefill.next_temporal, out[f"{prefix}temporal_query_out"], 1e-5)
            state = prefill.next_temporal
    results = predictor.predict_video(frames, [instruction])
    for t, (result,) in enumerate(results):
        assert result.query == int(out[f"frames.{t}.top1_query_index"])
        assert result.score == pytest.approx(float(out[f"frames.{t}.top1_score"]), abs=1e-6)
        assert np.array_equal(result.mask, out[f"frames.{t}.top1_mask_binary"].numpy().astype(bool))
        assert result.sequence_length == 1119


def test_video_without_the_carried_state_differs(predictor):
    """Frame 1 from the learned query instead of frame 0's state: the golden top-1 (44) is lost."""
    video = GOLDEN / "video"
    instruction = (video / "instruction.txt").read_text().strip()
    (alone,) = predictor.predict(rgb(video / "frame1.png"), [instruction], task="video")
    assert alone.query != 44
