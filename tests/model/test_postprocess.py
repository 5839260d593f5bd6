"""Post-processing against the golden run: full-resolution logits, scores and the top-1 mask."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model.postprocess import score_queries, top1, unpadded_extent, upsample_to_original

from .reference import GOLDEN

CANVAS = 128  # INPUT.IMAGE_SIZE of the tiny checkpoint
MASK_TOLERANCE = 1e-4  # golden README: mask logits
SCORE_TOLERANCE = 1e-6  # float64 replays of the release move the scores by <= 4.2e-7 (video README)


def load_case(case: str) -> dict:
    """Golden tensors and expectations of one case, all per query unless named ``*_by_instance``."""
    if case == "image":
        folder, prefix = GOLDEN / "reference", ""
        scalars = json.loads((folder / "scalars.json").read_text())
        expected = {
            "query": scalars["outputs.top1_query_index"],
            "instance": scalars["outputs.top1_instance_index"],
            "score": scalars["outputs.top1_score"],
            "original_hw": (scalars["inputs.height"], scalars["inputs.width"]),
            "resized_hw": (107, 128),  # 80 x 96 with the long side scaled to 128 (golden README)
        }
    else:
        folder, frame = GOLDEN / "video", int(case[-1])
        prefix = f"frames.{frame}."
        scalars = json.loads((folder / "scalars.json").read_text())
        entry = scalars["frames"][frame]
        expected = {
            "query": entry["top1_query_index"],
            "instance": entry["top1_instance_index"],
            "score": entry["top1_score"],
            "original_hw": tuple(scalars["image_size_hw"]),
            "resized_hw": tuple(scalars["swin_branch_resized_hw"]),
        }
    outputs, inputs = load_file(folder / "outputs.safetensors"), load_file(folder / "inputs.safetensors")
    tensors = {key[len(prefix) :]: value for key, value in outputs.items() if key.startswith(prefix)}
    tensors["padding_mask"] = inputs[prefix + "padding_mask"]
    return {**expected, **tensors}


CASES = ("image", "video-frame0", "video-frame1")


@pytest.mark.parametrize("case", CASES)
def test_matches_golden_postprocessing(case):
    golden = load_case(case)
    resized_hw = unpadded_extent(golden["padding_mask"])
    assert resized_hw == golden["resized_hw"]

    logits = upsample_to_original(golden["pred_masks_lowres"][0], CANVAS, resized_hw, golden["original_hw"])
    assert logits.shape == (100, *golden["original_hw"])
    # ``mask_logits_fullres_all`` is stored in query order (its top-1 row is ``top1_mask_logits_fullres``).
    torch.testing.assert_close(logits, golden["mask_logits_fullres_all"], rtol=0, atol=MASK_TOLERANCE)

    scores = score_queries(logits, golden["pred_SEG_logits"][0, :, 0])
    # ``scores`` is in the release's instance order: instance i is query ``instance_to_query[i]``.
    instance_to_query = golden["instance_to_query"]
    torch.testing.assert_close(scores[instance_to_query], golden["scores"], rtol=0, atol=SCORE_TOLERANCE)
    if "scores_by_query" in golden:
        torch.testing.assert_close(scores, golden["scores_by_query"], rtol=0, atol=SCORE_TOLERANCE)
    # SEG_cls (Q, 1) is accepted as well and is the same tensor as pred_SEG_logits.
    torch.testing.assert_close(score_queries(logits, golden["SEG_cls"]), scores, rtol=0, atol=0)

    best = top1(logits, scores)
    assert best.query == golden["query"] == int(instance_to_query[golden["instance"]])
    assert abs(best.score - golden["score"]) <= SCORE_TOLERANCE
    assert best.mask.dtype == torch.bool
    assert torch.equal(best.mask.float(), golden["top1_mask_binary"])
    torch.testing.assert_close(logits[best.query], golden["top1_mask_logits_fullres"], rtol=0, atol=MASK_TOLERANCE)


def test_image_top1_is_query_69():
    golden = load_case("image")
    logits = upsample_to_original(golden["pred_masks_lowres"][0], CANVAS, (107, 128), (80, 96))
    best = top1(logits, score_queries(logits, golden["pred_SEG_logits"][0, :, 0]))
    assert best.query == 69
    assert best.score == pytest.approx(0.61576, abs=5e-6)


def test_score_queries_hand_computed():
    # Query 0: two pixels above 0 (sigmoid 0.75 and 0.8); a logit of exactly 0 and a negative one are background.
    # Query 1: no foreground, so its mask score is 0 / (0 + 1e-6) = 0.
    mask_logits = torch.tensor(
        [[[math.log(3.0), math.log(4.0)], [0.0, -math.log(3.0)]], [[-1.0, -1.0], [-1.0, -1.0]]], dtype=torch.float64
    )
    seg_logits = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    expected = torch.tensor([0.5 * (0.75 + 0.8) / (2 + 1e-6), 0.0], dtype=torch.float64)
    torch.testing.assert_close(score_queries(mask_logits, seg_logits), expected, rtol=1e-12, atol=0)


def test_top1_ties_take_lowest_index():
    logits = torch.tensor([[[1.0, -1.0]], [[-1.0, 2.0]], [[3.0, 3.0]]])
    best = top1(logits, torch.tensor([0.25, 0.75, 0.75]))
    assert (best.query, best.score) == (1, 0.75)
    assert best.mask.tolist() == [[False, True]]


def test_upsample_crops_before_resizing():
    # A 2 x 2 map on a 4 x 4 canvas whose image covers only the top half: the crop keeps rows 0-1.
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    canvas = torch.nn.functional.interpolate(pred[None], size=(4, 4), mode="bilinear", align_corners=False)[0]
    out = upsample_to_original(pred, canvas=4, resized_hw=(2, 4), original_hw=(2, 4))
    assert torch.equal(out, canvas[:, :2, :])


def test_unpadded_extent_and_bad_inputs():
    padding = torch.ones(6, 8, dtype=torch.bool)
    padding[:4, :5] = False
    assert unpadded_extent(padding) == (4, 5)
    shifted = torch.ones(6, 8, dtype=torch.bool)
    shifted[1:4, :5] = False
    with pytest.raises(ValueError, match="origin"):
        unpadded_extent(shifted)
    with pytest.raises(ValueError, match="every pixel"):
        unpadded_extent(torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="canvas"):
        upsample_to_original(torch.zeros(2, 4, 4), canvas=16, resized_hw=(17, 16), original_hw=(8, 8))
    with pytest.raises(ValueError, match="seg_logits"):
        score_queries(torch.zeros(2, 3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="scores"):
        top1(torch.zeros(2, 3, 3), torch.zeros(3))
