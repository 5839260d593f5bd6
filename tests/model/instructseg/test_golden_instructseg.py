"""The definition of "InstructSeg inference works": golden-tiny-instructseg reproduced stage by stage.

Checkpoint, images, instructions and every stage come from ``../shared/reference/golden-tiny-instructseg/``
(what the released InstructSeg code computes). Tolerances are its README's: intermediates up to the pixel
decoder and VMTF 5e-5, SEG logits 1e-4, mask logits 2e-4, scores 2e-5, the same top-1 query, and a top-1
mask that differs only where |logit| < 2e-4. Eager attention and one thread, as the golden run.
"""

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model import InstructSegPredictor
from pipeline.model.instructseg.predictor import reference_frames, take
from pipeline.model.parts.postprocess import score_queries
from pipeline.model.parts.preprocess import siglip_view
from pipeline.model.parts.prompt import format_instruction

from ..reference import REFERENCE, rgb

GOLDEN = REFERENCE / "golden-tiny-instructseg"
STAGE, SEG, MASK, SCORE = 5e-5, 1e-4, 2e-4, 2e-5


@pytest.fixture(scope="module")
def predictor():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden run's reduction order
    yield InstructSegPredictor.from_pretrained(GOLDEN / "checkpoint", attn_implementation="eager")
    torch.set_num_threads(threads)


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    actual = actual.reshape(expected.shape) if actual.numel() == expected.numel() else actual
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f"max abs diff {diff} > {atol}"


def check_key_frame(predictor, encoded, text, task, inter, out, prefix=""):
    """Every stored stage of one key frame after SigLIP, then the scores, the top-1 query and its mask."""
    model = predictor.model
    for level in ("res2", "res3", "res4", "res5"):
        close(encoded.swin[level], inter[f"{prefix}swin.features.{level}"], STAGE)
    close(encoded.pixel.mask_features, inter[f"{prefix}pixel_decoder.mask_features"], STAGE)
    for i, feature in enumerate(encoded.pixel.multi_scale_features):
        close(feature, inter[f"{prefix}pixel_decoder.multi_scale_features.{i}"], STAGE)
    close(model.ovp.temporal_query, inter[f"{prefix}ovp.latents_in"], 0)
    refer = torch.tensor(predictor.tokenizer.encode(format_instruction(task, text)) + [384])
    close(model.llm.embed_tokens(refer), inter[f"{prefix}ovp.instruction_embeds"], 0)
    close(model.ovp(encoded.references[0], model.llm.embed_tokens(refer)), inter[f"{prefix}ovp.tokens"], STAGE)
    prefill = predictor.prefill(encoded, [[text]], task)
    assert prefill.llm.lengths.tolist() == [inter[f"{prefix}llm.inputs_embeds"].shape[1]]
    states = prefill.llm.refer_states[0]
    close(torch.cat([states.mean(0, keepdim=True), states]), inter[f"{prefix}refer.pooled_and_all"], STAGE)
    close(model.seg_query_projector(prefill.llm.seg), inter[f"{prefix}seg_query_projector.out"], STAGE)
    close(model.vmtf.local_project(encoded.swin["res5"]), inter[f"{prefix}local_project.out"], STAGE)
    seg_embedding = model.seg_embeddings(prefill.llm.refer_states, encoded.swin["res5"])
    close(seg_embedding, inter[f"{prefix}SEG_token_projector.out"], STAGE)
    decoded = predictor.decode(encoded, prefill)
    close(decoded.pred_masks, inter[f"{prefix}predictor.out.pred_masks"], MASK)
    close(decoded.pred_seg_logits, inter[f"{prefix}predictor.out.pred_SEG_logits"], SEG)
    for i, aux in enumerate(decoded.aux_outputs):
        close(aux.pred_masks, inter[f"{prefix}predictor.out.aux_outputs.{i}.pred_masks"], MASK)
        close(aux.pred_seg_logits, inter[f"{prefix}predictor.out.aux_outputs.{i}.pred_SEG_logits"], SEG)
    logits = predictor.full_resolution(encoded, 0, decoded.pred_masks[0])
    # The golden stores low-resolution logits only; upsampled here they give its scores exactly.
    golden = predictor.full_resolution(encoded, 0, out[f"{prefix}pred_masks_lowres"][0])
    close(score_queries(golden, out[f"{prefix}pred_SEG_logits"][0]), out[f"{prefix}scores_by_query"], 0)
    # Mask signs may differ only where |logit| < 2e-4; a query with such a flipped pixel has its mean confidence
    # moved by up to 1/area (one pixel of 5558 in key frame 0 moves query 70 by 3.7e-5), so the score tolerance
    # applies to the others.
    flipped = (logits > 0) != (golden > 0)
    assert (golden.abs()[flipped] < MASK).all()
    steady = ~flipped.flatten(1).any(1)
    assert steady.sum() >= 95
    scores = score_queries(logits, decoded.pred_seg_logits[0])
    close(scores[steady], out[f"{prefix}scores_by_query"][steady], SCORE)
    query = int(out[f"{prefix}top1_query_index"])
    close(logits[query], out[f"{prefix}top1_mask_logits_fullres"], MASK)
    return query


def same_top1(result, out, prefix=""):
    assert result.query == int(out[f"{prefix}top1_query_index"])
    assert result.score == pytest.approx(float(out[f"{prefix}top1_score"]), abs=SCORE)
    expected = out[f"{prefix}top1_mask_binary"].numpy().astype(bool)
    differs = result.mask != expected
    assert (out[f"{prefix}top1_mask_logits_fullres"].abs().numpy()[differs] < MASK).all()


def test_image_case(predictor):
    folder = GOLDEN / "image"
    inputs, inter, out = (load_file(folder / f"{n}.safetensors") for n in ("inputs", "intermediates", "outputs"))
    image = rgb(folder / "image.png")
    model = predictor.model
    assert predictor.prompt_ids("referring") == inputs["input_ids"][0].tolist()
    with torch.inference_mode():
        close(siglip_view(image, 54)[None], inputs["images_clip"], 1e-6)
        close(model.encode_vision(inputs["images_clip"]), inter["siglip.selected"], STAGE)
        encoded = predictor.encode([image])
        close(encoded.image_tokens, inter["mm_projector.out"], STAGE)
        close(encoded.references, inter["mm_projector.out"], STAGE)  # the image is its own reference frame
        assert check_key_frame(predictor, encoded, "the red box on the left", "referring", inter, out) == 39
    (result,) = predictor.predict(image, ["the red box on the left"])
    same_top1(result, out)
    assert result.sequence_length == 1103 and len(result.kept) == 729


def test_reference_frames_follow_the_release():
    golden = load_file(GOLDEN / "video" / "inputs.safetensors")
    for key in range(5):
        assert reference_frames(key, 5) == golden[f"frames.{key}.reference_frame_indices"].tolist()
    # The README's 8-frame example of the released rule.
    expected = [[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [1, 2, 4, 5], [2, 3, 5, 6], [3, 4, 6, 7], [3, 4, 5, 7]]
    expected.append([3, 4, 5, 6])
    assert [reference_frames(k, 8) for k in range(8)] == expected


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (1, [[0, 0, 0, 0]]),
        (2, [[1, 1, 1, 1], [0, 0, 0, 0]]),
        (3, [[1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1]]),
        (4, [[1, 1, 2, 3], [0, 0, 2, 3], [0, 0, 1, 3], [0, 0, 1, 2]]),
    ],
)
def test_short_videos_cycle_the_other_frames(length, expected):
    assert [reference_frames(k, length) for k in range(length)] == expected


def test_reference_frames_refuse_bad_input():
    with pytest.raises(ValueError, match="outside"):
        reference_frames(5, 5)
    with pytest.raises(ValueError, match="at least one"):
        reference_frames(0, 5, 0)


def test_video_case_every_frame_a_key_frame(predictor, monkeypatch):
    folder = GOLDEN / "video"
    inputs, inter, out = (load_file(folder / f"{n}.safetensors") for n in ("inputs", "intermediates", "outputs"))
    frames = [rgb(folder / f"frame{t}.png") for t in range(5)]
    model = predictor.model
    assert predictor.prompt_ids("video") == inputs["input_ids"][0].tolist()
    with torch.inference_mode():
        tokens = predictor.encode_tokens(frames)
        for j in range(5):
            close(tokens.features[j], inter[f"siglip_by_frame.{j}.siglip.selected"][0], STAGE)
            close(tokens.image_tokens[j], inter[f"siglip_by_frame.{j}.mm_projector.out"][0], STAGE)
        queries = []
        for key in range(5):
            refs = reference_frames(key, 5)
            references = model.projector(tokens.features[refs])[None]
            encoded = predictor.encode_key_frames([frames[key]], take(tokens, [key]), references)
            queries.append(check_key_frame(predictor, encoded, "the cup", "video", inter, out, f"frames.{key}."))
    assert queries == [6, 24, 19, 24, 50]
    # SigLIP runs once per frame, not once per role (the release: five times per key frame).
    seen = []
    forward = model.vision.forward
    monkeypatch.setattr(model.vision, "forward", lambda pixels: seen.append(len(pixels)) or forward(pixels))
    results = predictor.predict_video(frames, ["the cup"])
    assert sum(seen) == 5
    for key, (result,) in enumerate(results):
        same_top1(result, out, f"frames.{key}.")
