"""Training: a few steps lower the loss, and a run killed mid-way resumes to exactly the uninterrupted result."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.model import HyperSegPredictor
from pipeline.train import loop
from pipeline.train.data import Batch, DataSettings, image_item
from pipeline.train.loop import TrainConfig, batch_loss, optimizer_for, train
from pipeline.train.loss import Targets, criterion, grounding_loss, match, token_cover

SMALL = DataSettings(images_per_step=2, clips_per_step=1, video_every=2, clip_frames=2, max_expressions=2)


def test_instance_matching_pairs_each_object_with_the_query_that_paints_it():
    objects = torch.zeros(3, 16, 16)
    objects[0, :8, :8], objects[1, :8, 8:], objects[2, 8:, :] = 1, 1, 1
    masks = torch.full((1, 6, 4, 4), -8.0)
    masks[0, 5, :2, :2] = masks[0, 2, :2, 2:] = masks[0, 0, 2:, :] = 8.0  # queries 5, 2, 0 paint objects 0, 1, 2
    named = objects[1:2].clone()  # the expression names object 1
    targets = Targets(named, torch.ones(1, 16, 16, dtype=torch.bool), [objects], [(1,)])
    queries, pairs = match(masks, targets)
    rows, cols = pairs[0]
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 5, 1: 2, 2: 0}
    assert queries.tolist() == [2]  # the named object's own query is the [SEG] positive
    from pipeline.model.parts.mask_decoder import MaskDecoderOutput

    seg = torch.full((1, 6, 1), -5.0)
    seg[0, 2] = 5.0
    loss, terms = criterion(MaskDecoderOutput(masks, seg, []), targets, instance_weight=0.5)
    assert terms["instance"] < 0.5 and terms["dice"] < 0.1  # every object painted by its matched query
    without, terms_without = criterion(MaskDecoderOutput(masks, seg, []), targets)
    assert "instance" not in terms_without
    assert float(loss - without) == pytest.approx(0.5 * terms["instance"], rel=1e-4)


def test_the_choice_term_is_a_softmax_over_the_objects_queries_and_ignores_what_they_share():
    objects = torch.zeros(3, 16, 16)
    objects[0, :8, :8], objects[1, :8, 8:], objects[2, 8:, :] = 1, 1, 1
    masks = torch.full((1, 6, 4, 4), -8.0)
    masks[0, 5, :2, :2] = masks[0, 2, :2, 2:] = masks[0, 0, 2:, :] = 8.0  # queries 5, 2, 0 paint objects 0, 1, 2
    targets = Targets(objects[1:2].clone(), torch.ones(1, 16, 16, dtype=torch.bool), [objects], [(1,)])
    from pipeline.model.parts.mask_decoder import MaskDecoderOutput

    seg = torch.tensor([0.5, -3.0, 2.0, 7.0, 9.0, -1.0])  # queries 1, 3, 4 paint nothing: outside the softmax
    _, terms = criterion(MaskDecoderOutput(masks, seg[None, :, None], []), targets, choice_weight=1.0)
    expected = -torch.log_softmax(torch.tensor([-1.0, 2.0, 0.5]), 0)[1]  # objects 0, 1, 2 via queries 5, 2, 0
    assert terms["choice"] == pytest.approx(float(expected), rel=1e-5)
    shifted = seg.clone()
    shifted[[5, 2, 0]] += 4.0  # what the objects' queries share, e.g. "is an object"
    _, moved = criterion(MaskDecoderOutput(masks, shifted[None, :, None], []), targets, choice_weight=1.0)
    assert moved["choice"] == pytest.approx(terms["choice"], rel=1e-5) and moved["seg"] != terms["seg"]
    plural = Targets(objects[:2].amax(0, keepdim=True), targets.valid, [objects], [(0, 1)])
    _, none = criterion(MaskDecoderOutput(masks, seg[None, :, None], []), plural, choice_weight=1.0)
    assert none["choice"] == 0.0  # an expression naming several objects has no single choice


def test_token_cover_is_each_patch_share_of_the_target_on_the_squashed_grid():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:2, :3] = True  # the top-left quarter of a 2 x 2 grid of 2 x 3 patches
    mask[3, 5] = True  # one pixel of the bottom-right patch
    assert token_cover(mask, (2, 2), torch.tensor([3, 0, 1])).tolist() == pytest.approx([1 / 6, 1.0, 0.0])


def test_the_grounding_term_is_a_soft_cross_entropy_over_the_visual_tokens():
    torch.manual_seed(0)
    seg, image = torch.randn(2, 8), torch.randn(2, 5, 8)
    cover = torch.tensor([[0.0, 1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])  # the second: no kept token covered
    logits = image[0] @ seg[0] / 8**0.5
    expected = -(torch.tensor([0, 2 / 3, 1 / 3, 0, 0]) * torch.log_softmax(logits, 0)).sum()
    assert float(grounding_loss(seg, image, cover)) == pytest.approx(float(expected), rel=1e-5)
    # The state that points at the target's tokens scores lower than one pointing away.
    toward, away = image[0, 1] + image[0, 2], -(image[0, 1] + image[0, 2])
    assert grounding_loss(toward[None], image[:1], cover[:1]) < grounding_loss(away[None], image[:1], cover[:1])


def test_batch_loss_adds_the_grounding_term_from_the_llm_image_states():
    predictor = HyperSegPredictor.from_preset("tiny", seed=0)
    batch = Batch(0, [image_item(i, 0, SMALL) for i in range(2)], [])
    with pytest.raises(ValueError, match="image_states"):  # inference does not keep them
        batch_loss(predictor, batch, ground_weight=1.0)
    predictor.image_states = True
    plain, _, _ = batch_loss(predictor, batch)
    grounded, terms, _ = batch_loss(predictor, batch, ground_weight=1.0)
    assert terms["ground"] > 0
    assert float(grounded) == pytest.approx(float(plain) + terms["ground"], rel=1e-4)


def test_a_few_steps_on_eight_samples_lower_the_loss():
    predictor = HyperSegPredictor.from_preset("tiny", seed=0)
    predictor.model.train()
    images = [image_item(i, 0, SMALL) for i in range(8)]
    batch = Batch(0, images, [])
    optimizer = optimizer_for(predictor.model, TrainConfig(lr=1e-3))
    losses = []
    for _ in range(6):
        loss, _, _ = batch_loss(predictor, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_matching_picks_the_query_whose_mask_fits_and_the_loss_prefers_it():
    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    targets = Targets(target, torch.ones(1, 16, 16, dtype=torch.bool))
    masks = torch.full((1, 5, 4, 4), -8.0)
    masks[0, 3, 1:3, 1:3] = 8.0  # query 3 paints exactly the target (at a quarter of the resolution)
    masks[0, 1] = 8.0  # query 1 paints everything
    queries, pairs = match(masks, targets)
    assert queries.tolist() == [3] and [len(r) for r, _ in pairs] == [0]  # no objects: no instance pairs
    seg_good, seg_bad = torch.full((1, 5, 1), -5.0), torch.full((1, 5, 1), -5.0)
    seg_good[0, 3], seg_bad[0, 1] = 5.0, 5.0
    from pipeline.model.parts.mask_decoder import MaskDecoderOutput

    good, _ = criterion(MaskDecoderOutput(masks, seg_good, []), targets)
    bad, _ = criterion(MaskDecoderOutput(masks, seg_bad, []), targets)
    assert good < bad


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    config = TrainConfig(preset="tiny", tokenizer="tiny", steps=3, warmup=1, eval_images=0, save_every=1, data=SMALL)
    folder = tmp_path_factory.mktemp("whole")
    train(config, folder, progress_bar=False)
    return config, folder


def test_a_killed_run_resumes_to_the_same_weights(uninterrupted, tmp_path, monkeypatch):
    config, whole = uninterrupted
    original = loop.save_state

    def save_then_die(folder, predictor, optimizer, progress, config):
        original(folder, predictor, optimizer, progress, config)
        if progress.step == 2:
            raise KeyboardInterrupt  # the session ends right after the step-2 save

    monkeypatch.setattr(loop, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, progress_bar=False)
    monkeypatch.setattr(loop, "save_state", original)
    progress = train(config, tmp_path, progress_bar=False)
    assert progress.step == 3 and [s["step"] for s in progress.sessions] == [0, 2]
    resumed = load_file(tmp_path / "state" / "model.safetensors")
    expected = load_file(whole / "state" / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-6, msg=key)
    # The finished run wrote a checkpoint in the released layout and its curve.
    assert (tmp_path / "checkpoint" / "config.json").is_file() and (tmp_path / "curve.png").stat().st_size > 1000


def test_another_configuration_in_the_folder_is_refused(uninterrupted):
    config, folder = uninterrupted
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(**{**config.__dict__, "lr": 1e-2}), folder, progress_bar=False)


def test_schedule_warms_up_then_decays_to_the_floor():
    factor = loop.schedule(TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1))
    values = np.array([factor(s) for s in range(100)])
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert np.all(np.diff(values[10:]) <= 1e-12) and values[-1] == pytest.approx(0.1, abs=1e-3)


def test_top1_iou_scores_the_picked_query_and_the_best_one():
    from pipeline.model.parts.mask_decoder import MaskDecoderOutput
    from pipeline.train.loss import Targets, top1_iou

    # 8 x 8 logits on a 16 canvas (2x upsampling); the target is the left half of the canvas.
    masks = torch.full((1, 3, 8, 8), -10.0)
    masks[0, 0, :, :4] = 10.0  # the left half: IoU 1
    masks[0, 1, :, :2] = 10.0  # a quarter: IoU 0.5
    masks[0, 2] = 10.0  # everything: IoU 0.5
    target = torch.zeros(1, 16, 16)
    target[0, :, :8] = 1.0
    targets = Targets(target, torch.ones(1, 16, 16, dtype=torch.bool))
    seg = torch.tensor([[[-5.0], [5.0], [0.0]]])  # query 1 wins the score
    result = top1_iou(MaskDecoderOutput(masks, seg, []), targets)
    assert result.shape == (1, 2)
    assert result[0, 0].item() == pytest.approx(0.5) and result[0, 1].item() == 1.0
