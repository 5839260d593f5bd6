"""Post-processing against the golden run: full-resolution logits, scores and the top-1 mask."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from pipeline.model.parts import postprocess
from pipeline.model.parts.postprocess import best_query, score_queries, top1, unpadded_extent, upsample_to_original

from ..reference import GOLDEN

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


def released_upsample(pred: torch.Tensor, canvas: int, resized_hw, original_hw) -> torch.Tensor:
    """The release's order: the whole padded canvas, then the crop, then the original size."""
    full = torch.nn.functional.interpolate(pred[None], size=(canvas, canvas), mode="bilinear", align_corners=False)
    full = full[:, :, : resized_hw[0], : resized_hw[1]]
    return torch.nn.functional.interpolate(full, size=tuple(original_hw), mode="bilinear", align_corners=False)[0]


def random_cases(count: int):
    """Decoder outputs of assorted sizes (strides 3 and 4, any crop, any original size), some with ties."""
    for seed in range(count):
        g = torch.Generator().manual_seed(seed)
        canvas, stride = [(16, 4), (32, 4), (64, 4), (48, 3)][seed % 4]
        queries = 1 + seed % 12
        resized = tuple(int(v) for v in torch.randint(1, canvas + 1, (2,), generator=g))
        original = tuple(int(v) for v in torch.randint(1, 90, (2,), generator=g))
        pred = torch.randn(queries, canvas // stride, canvas // stride, generator=g) * 3 - seed % 3
        seg = torch.randn(queries, generator=g) * (seed % 5)  # seed % 5 == 0: every SEG logit is 0
        if seed % 7 == 0:
            pred[:] = pred[0]  # identical queries: ties everywhere
        if seed % 13 == 0:
            pred[:] = -1.0  # every mask empty: every score 0
        yield seed, pred, seg, canvas, resized, original


def test_upsampling_only_the_kept_extent_is_bit_identical_to_the_release():
    for seed, pred, _, canvas, resized, original in random_cases(200):
        assert torch.equal(
            upsample_to_original(pred, canvas, resized, original), released_upsample(pred, canvas, resized, original)
        ), seed


def test_best_query_is_top1_over_all_queries():
    for seed, pred, seg, canvas, resized, original in random_cases(300):
        logits = released_upsample(pred, canvas, resized, original)
        scores = score_queries(logits, seg)
        expected = top1(logits, scores)
        got = best_query(pred, seg, canvas, resized, original)
        assert got.score == pytest.approx(expected.score, rel=1e-6, abs=0), seed
        assert torch.equal(got.mask, logits[got.query] > 0), seed
        if seed % 7:  # distinct queries: the same one. Identical ones tie, and the release's own pick among
            # them is decided by the interpolation's last-bit rounding, which varies with the plane's position.
            assert got.query == expected.query, seed
        else:
            assert scores[got.query] == pytest.approx(expected.score, rel=1e-6, abs=0), seed


@pytest.mark.parametrize("case", CASES)
def test_best_query_on_the_golden_runs(case):
    golden = load_case(case)
    pred, seg = golden["pred_masks_lowres"][0], golden["pred_SEG_logits"][0, :, 0]
    got = best_query(pred, seg, CANVAS, golden["resized_hw"], golden["original_hw"])
    assert got.query == golden["query"]
    assert got.score == pytest.approx(golden["score"], abs=SCORE_TOLERANCE)
    assert torch.equal(got.mask, golden["top1_mask_binary"].bool())


def expected_quality(plane: torch.Tensor, seg_logit: float) -> tuple[float, float, float]:
    """The signals written out from their definitions in float64."""
    plane = plane.double()
    inside = plane > 0
    mask_score = float(torch.sigmoid(plane)[inside].sum()) / (int(inside.sum()) + 1e-6)
    low = int((plane > -1).sum())
    return 1 / (1 + math.exp(-seg_logit)), mask_score, int((plane > 1).sum()) / low if low else math.nan


def test_best_query_gives_the_chosen_querys_quality_signals():
    for seed, pred, seg, canvas, resized, original in random_cases(60):
        got = best_query(pred, seg, canvas, resized, original)
        plane = released_upsample(pred, canvas, resized, original)[got.query]
        seg_score, mask_score, stability = expected_quality(plane, float(seg[got.query]))
        quality = got.quality
        assert quality.seg_score == pytest.approx(seg_score, rel=1e-6), seed
        assert quality.mask_score == pytest.approx(mask_score, rel=1e-5, abs=1e-7), seed
        assert quality.stability == pytest.approx(stability, rel=1e-12, nan_ok=True), seed
        assert got.score == pytest.approx(quality.seg_score * quality.mask_score, rel=1e-5, abs=1e-7), seed
    # Exact cases: a plane with 6 pixels above +1 of 10 above -1; one with none above -1 (SAM's 0 / 0).
    pred = torch.full((1, 8, 8), -3.0)
    pred[0, :2, :3], pred[0, 2, :4] = 2.0, 0.5
    got = best_query(pred, torch.tensor([0.0]), 8, (8, 8), (8, 8))
    assert got.quality.stability == 0.6 and got.quality.seg_score == 0.5
    assert got.quality.mask_score == pytest.approx((6 / (1 + math.exp(-2.0)) + 4 / (1 + math.exp(-0.5))) / 10)
    empty = best_query(torch.full((1, 8, 8), -3.0), torch.tensor([0.0]), 8, (8, 8), (8, 8))
    assert math.isnan(empty.quality.stability) and empty.quality.mask_score == 0.0


def test_best_query_skips_the_queries_that_cannot_win(monkeypatch):
    calls = []

    def counted(pred, *args):
        calls.append(pred.shape[0])
        return upsample_to_original(pred, *args)

    monkeypatch.setattr(postprocess, "upsample_to_original", counted)
    pred = torch.full((100, 8, 8), -5.0)
    pred[42] = 20.0  # a confident full mask: mask score 1
    seg = torch.full((100,), -4.0)
    seg[42] = 6.0  # sigmoid 0.9975, above every other query's 0.018
    got = best_query(pred, seg, 32, (32, 24), (40, 30))
    assert (got.query, bool(got.mask.all())) == (42, True)
    assert calls == [postprocess.QUERY_CHUNK]  # one chunk, holding query 42, then the bound stops it
    assert got.scored == postprocess.QUERY_CHUNK
    calls.clear()
    seg[:] = 6.0  # every query could win now: all are computed, and the lowest index wins the tie
    pred[:] = 20.0
    every = best_query(pred, seg, 32, (32, 24), (40, 30))
    assert every.query == 0 and every.scored == 100
    assert sum(calls) == 100


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
    with pytest.raises(ValueError, match="seg_logits"):
        best_query(torch.zeros(2, 3, 3), torch.zeros(3), 12, (12, 12), (5, 5))
