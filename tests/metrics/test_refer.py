"""LISA gIoU / cIoU (metrics.md §4.2-4.4) and HyperSeg's variant (§4.5), by hand, with the float32 accumulation."""

import numpy as np
import pytest

from pipeline.metrics import PairScore, ReferSummary, score_pair, summarize_refer

# Column 2 is ignored (255). Prediction hits (0,0), (1,0) and the ignored (0,2), (1,2).
TARGET = np.array([[1, 1, 255], [0, 0, 255]], dtype=np.uint8)
PREDICTION = np.array([[1, 0, 1], [1, 0, 1]], dtype=np.uint8)


def test_ignore_label_255():
    # Pf = {(0,0), (1,0)}, Gf = {(0,0), (0,1)}: I = 1, U = 2 + 2 - 1 = 3; the ignored column counts nowhere.
    pair = score_pair(PREDICTION, TARGET)
    assert pair == PairScore(intersection=1, union=3)
    assert pair.iou == 1 / (3 + 1e-5)


def test_overlap_value_2_is_not_target_but_counts_in_the_union():
    assert score_pair(np.array([[1, 1]]), np.array([[2, 1]])) == PairScore(1, 2)
    assert score_pair(np.array([[0, 1]]), np.array([[2, 1]])) == PairScore(1, 1)


def test_hyperseg_counts_ignore_as_target():
    # BitMasks casts the GT to bool: [[1, 1, 1], [0, 0, 1]]. I = {(0,0), (0,2), (1,2)} = 3, U = 4 + 4 - 3 = 5.
    assert score_pair(PREDICTION, TARGET, variant="hyperseg") == PairScore(3, 5)
    assert score_pair(np.array([[1, 1]]), np.array([[2, 1]]), variant="hyperseg") == PairScore(2, 2)


def test_empty_cases():
    empty = np.zeros((3, 3), dtype=np.uint8)
    full = np.ones((3, 3), dtype=np.uint8)
    assert score_pair(empty, empty).iou == 1.0  # empty union: no-object target counts 1
    assert score_pair(full, empty).iou == 0.0
    assert score_pair(empty, full).iou == 0.0
    assert score_pair(full, np.full((3, 3), 255, dtype=np.uint8)) == PairScore(0, 0)  # all ignored
    assert score_pair(full * 255, full) == PairScore(9, 9)  # a 0/255 prediction is binarised


def test_giou_and_ciou_by_hand():
    pairs = [PairScore(1, 2), PairScore(3, 4), PairScore(0, 0)]
    summary = summarize_refer(pairs)
    giou = (1 / (2 + 1e-5) + 3 / (4 + 1e-5) + 1.0) / (3 + 1e-5)
    assert summary == ReferSummary(giou=pytest.approx(giou, rel=1e-15), ciou=4 / (6 + 1e-10), pairs=3)
    assert summary.giou == pytest.approx(0.75, abs=1e-5) and summary.ciou == pytest.approx(2 / 3, rel=1e-9)


def test_ciou_pools_while_giou_averages():
    # A big perfect pair and a small missed one: cIoU is dominated by the big one, gIoU is not.
    summary = summarize_refer([PairScore(1000, 1000), PairScore(0, 10)])
    assert summary.ciou == pytest.approx(1000 / 1010, rel=1e-12)
    assert summary.giou == pytest.approx(0.5, abs=1e-5)


def test_float32_accumulation():
    # 2**24 + 1 is not a float32: LISA's float32 union sum stays at 2**24, so cIoU = 2 / 2**24 exactly.
    pairs = [PairScore(1, 2**24), PairScore(1, 1)]
    assert summarize_refer(pairs, precision="float32").ciou == 2**-23
    assert summarize_refer(pairs).ciou == 2 / (2**24 + 1 + 1e-10)
    # gIoU: float32(1) / float32(2 + 1e-5) per pair, then sum / float32(count + 1e-5).
    g = np.float32(1) / (np.float32(2) + np.float32(1e-5))
    expected = float((g + g) / np.float32(2 + 1e-5))
    assert summarize_refer([PairScore(1, 2), PairScore(1, 2)], precision="float32").giou == expected


def test_items_group_pairs_as_dataloader_items():
    pairs = [PairScore(1, 2), PairScore(1, 3), PairScore(0, 5)]
    grouped = summarize_refer(pairs, items=["img1", "img1", "img2"])
    assert grouped.pairs == 3
    assert grouped.giou == pytest.approx(summarize_refer(pairs).giou, rel=1e-15)
    with pytest.raises(ValueError, match="item keys"):
        summarize_refer(pairs, items=["img1"])


def test_world_size_padding_repeats_the_first_items():
    # DistributedSampler: 3 items on 2 GPUs -> 4 slots, item 0 scored twice.
    pairs = [PairScore(0, 0), PairScore(0, 4), PairScore(0, 4)]
    single = summarize_refer(pairs)
    padded = summarize_refer(pairs, world_size=2)
    assert single.pairs == 3 and single.giou == 1.0 / (3 + 1e-5)
    assert padded.pairs == 4 and padded.giou == 2.0 / (4 + 1e-5)
    assert summarize_refer(pairs, world_size=5).pairs == 5  # padding longer than the data wraps around


def test_errors_and_rows():
    with pytest.raises(ValueError, match="no pairs"):
        summarize_refer([])
    with pytest.raises(ValueError, match="precision"):
        summarize_refer([PairScore(0, 0)], precision="float16")
    with pytest.raises(ValueError, match="world_size"):
        summarize_refer([PairScore(0, 0)], world_size=0)
    with pytest.raises(ValueError, match="variant"):
        score_pair(PREDICTION, TARGET, variant="psalm")
    with pytest.raises(ValueError, match="shapes differ"):
        score_pair(PREDICTION, TARGET[:, :2])
    assert PairScore.from_row({"intersection": 3, "union": 7, "j": 0.4}) == PairScore(3, 7)


def test_properties_on_random_masks():
    rng = np.random.default_rng(4)
    for _ in range(30):
        prediction = rng.random((8, 9)) < 0.4
        target = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=(8, 9), p=[0.4, 0.4, 0.1, 0.1])
        pair = score_pair(prediction, target)
        valid = target != 255
        assert pair.intersection == np.count_nonzero(prediction & (target == 1))
        assert pair.union == np.count_nonzero((prediction & valid) | (target == 1))
        assert 0.0 <= pair.iou <= 1.0
