"""The shipped checkpoint on the card's small fixed held-out set (`pipeline.train.card.TEST_IMAGES`, `TEST_VIDEOS`)."""

import json

import numpy as np
import pytest

from pipeline.config import PruningConfig
from pipeline.engine.cli import SHIPPED_CHECKPOINT
from pipeline.model import load
from pipeline.synth.video import MOTION_FAMILIES
from pipeline.train.card import TEST_IMAGES, TEST_VIDEOS
from pipeline.train.evaluate import evaluate_images, evaluate_video, heldout_images, heldout_videos

CARD = json.loads((SHIPPED_CHECKPOINT / "card.json").read_text())["heldout"]["test_set"]
# The test set is fixed and inference is deterministic; the tolerance covers float32 sums on other CPUs and BLAS
# builds. A wrong preprocessing, loading or pruning path moves gIoU on 16 images by far more.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def predictor():
    return load.from_pretrained(SHIPPED_CHECKPOINT)


@pytest.fixture(scope="module")
def images():
    return heldout_images(TEST_IMAGES)


@pytest.fixture(scope="module")
def videos(predictor):
    """Each test video with its per-expression J, the FVP state carried (as the card's ``video_j``)."""
    return [(sample, evaluate_video(predictor, sample)) for sample in heldout_videos(TEST_VIDEOS)]


@pytest.fixture(scope="module")
def full(predictor, images):
    assert predictor.pruning == PruningConfig()  # keep 1.0, as the card
    return evaluate_images(predictor, images)


def test_the_shipped_checkpoint_reaches_its_cards_accuracy(full, videos):
    assert CARD["images"] == TEST_IMAGES and CARD["videos"] == TEST_VIDEOS
    assert full.giou == pytest.approx(CARD["giou"], abs=TOLERANCE)
    assert full.ciou == pytest.approx(CARD["ciou"], abs=TOLERANCE)
    video_j = np.mean([j for _, scores in videos for j in scores])
    assert video_j == pytest.approx(CARD["video_j"], abs=TOLERANCE)


def test_evtp_at_keep_0_2_keeps_90_percent_of_the_accuracy(predictor, images, full):
    predictor.pruning = PruningConfig("evtp", 0.2)
    try:
        pruned = evaluate_images(predictor, images)
    finally:
        predictor.pruning = PruningConfig()
    assert pruned.giou >= 0.9 * full.giou


@pytest.mark.xfail(
    strict=True,
    reason="not met yet: the shipped model's FVP state carries no motion (card: motion J 0.285 carried, 0.284 "
    "frame by frame on 126 expressions); issue 13 is blocked on it (docs/training.md: what the measurements say)",
)
def test_the_carried_video_state_beats_frame_by_frame_on_motion_expressions(predictor, videos):
    carried, alone = [], []
    for sample, with_state in videos:
        motion = [e.family in MOTION_FAMILIES for e in sample.expressions]
        without = evaluate_video(predictor, sample, carry=False)
        carried += [j for j, m in zip(with_state, motion, strict=True) if m]
        alone += [j for j, m in zip(without, motion, strict=True) if m]
    assert len(carried) >= 10
    assert np.mean(carried) > np.mean(alone) + 0.02


def test_the_card_names_its_command_seed_commit_and_time():
    card = json.loads((SHIPPED_CHECKPOINT / "card.json").read_text())
    assert card["command"].startswith("python jobs/train.py ") and card["seed"] == 0
    assert all(len(commit) == 40 for commit in card["commits"]) and card["training_seconds"] <= 2 * 3600
