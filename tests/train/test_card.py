"""The model card's check that the LLM reads the image: one visual token against all, and the chance level."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.config import PruningConfig
from pipeline.train.card import chance_iou, image_rows, reliance_summary, render
from pipeline.train.evaluate import heldout_images
from pipeline.train.loop import TrainConfig, build


def test_chance_is_the_mean_iou_of_the_scenes_objects_with_the_target():
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, :2] = True  # the target: 8 pixels
    masks[1, 2:] = True  # disjoint: IoU 0
    masks[2, 1:3] = True  # 4 shared of 12: IoU 1/3
    sample = SimpleNamespace(scene=SimpleNamespace(objects=[SimpleNamespace(visible=m) for m in masks]))
    # Scored as the model's masks are (LISA's IoU, whose union carries an epsilon).
    assert chance_iou(sample, (0,)) == pytest.approx((1 + 0 + 1 / 3) / 3, rel=1e-5)
    # A plural target is the union of its objects: all 16 pixels, of which each object covers half.
    assert chance_iou(sample, (0, 1)) == pytest.approx(0.5, rel=1e-5)


def test_reliance_scores_the_same_expressions_with_one_visual_token(tmp_path):
    predictor = build(TrainConfig(preset="tiny", tokenizer="tiny"), tmp_path)
    predictor.model.eval()
    samples = heldout_images(2)
    full = image_rows(predictor, samples)
    summary = reliance_summary(predictor, samples, full)
    assert predictor.pruning == PruningConfig()  # restored

    predictor.pruning = PruningConfig("evtp", 1)
    one = [r["iou"] for r in image_rows(predictor, samples)]
    full_ious = [r["iou"] for r in full]
    assert one != full_ious  # random weights: one token changes the masks, so the two passes can be told apart
    assert summary["giou_keep_1.0"] == pytest.approx(np.mean(full_ious))
    assert summary["giou_one_token"] == pytest.approx(np.mean(one))
    assert summary["drop"] == pytest.approx(np.mean(full_ious) - np.mean(one))
    low, high = summary["drop_ci"]
    assert low <= summary["drop"] <= high
    assert 0 < summary["chance_giou"] < 1

    card = {
        "preset": "tiny",
        "parameters": 1e6,
        "command": "python jobs/train.py",
        "seed": 0,
        "commits": ["abc"],
        "steps": 1,
        "training_seconds": 60,
        "machine": "cpu",
        "heldout": {
            "refcoco": {"images": 2, "expressions": 1, "giou": 0.5, "giou_ci": [0.4, 0.6], "families": {}},
            "reasonseg": {"images": 2, "expressions": 1, "giou": 0.5, "giou_ci": [0.4, 0.6], "families": {}},
            "reliance": summary,
            "video": {"videos": 0},
            "test_set": {"images": 2, "videos": 0, "giou": 0.5, "ciou": 0.5, "video_j": 0.5},
        },
    }
    text = render(card)
    assert f"| {summary['giou_keep_1.0']:.3f} | {summary['giou_one_token']:.3f} | {summary['drop']:+.3f}" in text
