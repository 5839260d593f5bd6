"""The contract every method keeps, and each method against its plain loop implementation."""

import math

import pytest
import torch

from pipeline.pruning import METHODS, budget, select_tokens

from . import reference as ref


def options_for(method, features):
    generator = torch.Generator().manual_seed(7)
    if method == "attention":
        return {"scores": torch.randn(features.shape[:2], generator=generator)}
    if method == "visionzip":
        scores = torch.rand(features.shape[:2], generator=generator)
        return {"scores": scores, "keys": torch.randn(*features.shape[:2], 6, generator=generator)}
    return {}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("keep", [0.1, 0.5, 7])
def test_contract(method, keep, frames):
    features, grid = frames
    b, n, _ = features.shape
    sel = select_tokens(features, grid, keep, method, **options_for(method, features))
    k = n if method == "none" else budget(keep, n)
    assert sel.indices.shape == (b, k) and sel.indices.dtype == torch.int64
    for row in sel.indices.tolist():
        assert row == sorted(set(row)), "indices must be unique and ascending"
        assert 0 <= row[0] and row[-1] < n
    for diag in (sel.feature_radius, sel.grid_radius, sel.lam):
        assert diag.shape == (b,) and diag.dtype == torch.float32
    assert torch.all(sel.feature_radius >= 0) and torch.all(sel.grid_radius >= 0)
    assert torch.isnan(sel.lam).all() == (method in ("random", "grid", "attention", "visionzip", "none"))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_keep_one_returns_every_token(method, frames):
    features, grid = frames
    sel = select_tokens(features, grid, 1.0, method, **options_for(method, features))
    assert torch.equal(sel.indices, torch.arange(48).expand(3, 48))
    assert torch.equal(sel.feature_radius, torch.zeros(3)) and torch.equal(sel.grid_radius, torch.zeros(3))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_batch_equals_one_frame_at_a_time(method, frames):
    features, grid = frames
    options = options_for(method, features)
    batched = select_tokens(features, grid, 0.25, method, **options)
    for i in range(features.shape[0]):
        one = {k: v[i : i + 1] for k, v in options.items()}
        single = select_tokens(features[i : i + 1], grid, 0.25, method, **one)
        if method == "random":  # the draw is per batch, so only the first row is comparable
            if i == 0:
                assert torch.equal(single.indices[0], batched.indices[0])
            continue
        assert torch.equal(single.indices[0], batched.indices[i])
        torch.testing.assert_close(single.feature_radius[0], batched.feature_radius[i])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_any_float_dtype_computes_in_float32(dtype, frames):
    features, grid = frames
    low = features.to(dtype)
    assert torch.equal(select_tokens(low, grid, 0.2).indices, select_tokens(low.float(), grid, 0.2).indices)


EVTP_VARIANTS = [
    {},
    {"alpha": 0.5},
    {"alpha": 3.0},
    {"lam": 0.3},
    {"first": "farthest_from_mean"},
    {"first": "grid_center"},
    {"first": "index0"},
]


@pytest.mark.parametrize(
    "options", EVTP_VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
@pytest.mark.parametrize("keep", [0.1, 0.25, 0.6])
def test_evtp_equals_loop_reference(options, keep, frames):
    features, grid = frames
    sel = select_tokens(features, grid, keep, "evtp", **options)
    for i, v in enumerate(features.numpy()):
        expected, lam = ref.evtp(v, grid, budget(keep, 48), **options)
        assert sel.indices[i].tolist() == expected
        assert math.isclose(float(sel.lam[i]), lam, rel_tol=1e-5)
        assert math.isclose(float(sel.feature_radius[i]), ref.feature_radius(v, expected), rel_tol=1e-4)
        assert math.isclose(float(sel.grid_radius[i]), ref.grid_radius(grid, expected), rel_tol=1e-6)


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.6])
def test_kcenter_equals_loop_reference(keep, frames):
    features, grid = frames
    sel = select_tokens(features, grid, keep, "kcenter")
    for i, v in enumerate(features.numpy()):
        assert sel.indices[i].tolist() == ref.evtp(v, grid, budget(keep, 48), lam=0.0)[0]
    assert torch.equal(sel.lam, torch.zeros(3))


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.6])
def test_divprune_equals_loop_reference(keep, frames):
    features, grid = frames
    # DivPrune uses raw (uncentred) features: shift them so that centring would change the answer.
    features = features + 0.8
    sel = select_tokens(features, grid, keep, "divprune")
    for i, v in enumerate(features.numpy()):
        expected = ref.divprune(v, grid, budget(keep, 48))
        assert sel.indices[i].tolist() == expected
        assert math.isclose(float(sel.feature_radius[i]), ref.feature_radius(v, expected), rel_tol=1e-4)
    assert not torch.equal(sel.indices, select_tokens(features, grid, keep, "kcenter").indices)


def test_attention_equals_loop_reference(frames):
    features, grid = frames
    scores = torch.randint(0, 5, (3, 48)).float()  # many exact ties: the lowest index must win
    sel = select_tokens(features, grid, 0.25, "attention", scores=scores)
    for i in range(3):
        assert sel.indices[i].tolist() == ref.top_k(scores[i].tolist(), 12)


def test_random_equals_loop_reference(frames):
    features, grid = frames
    sel = select_tokens(features, grid, 0.25, "random", seed=5)
    keys = torch.rand(3, 48, generator=torch.Generator().manual_seed(5)).tolist()
    for i in range(3):
        assert sel.indices[i].tolist() == sorted(sorted(range(48), key=lambda t: (keys[i][t], t))[:12])


def test_random_is_seeded(frames):
    features, grid = frames
    a = select_tokens(features, grid, 0.25, "random", seed=1).indices
    assert torch.equal(a, select_tokens(features, grid, 0.25, "random", seed=1).indices)
    assert not torch.equal(a, select_tokens(features, grid, 0.25, "random", seed=2).indices)
    assert not torch.equal(a[0], a[1]), "frames of one batch get different draws"


def test_grid_and_none_ignore_features(frames):
    features, grid = frames
    a = select_tokens(features, grid, 0.25, "grid").indices
    assert torch.equal(a, select_tokens(torch.randn(3, 48, 10), grid, 0.25, "grid").indices)
    assert torch.equal(a[0], a[2])
    assert select_tokens(features, grid, 0.1, "none").k == 48


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_selection_on_cpu_and_cuda(method, frames):
    features, grid = frames
    options = options_for(method, features)
    cpu = select_tokens(features, grid, 0.25, method, **options)
    gpu = select_tokens(features.cuda(), grid, 0.25, method, **{k: v.cuda() for k, v in options.items()})
    assert gpu.indices.device.type == "cuda"
    assert torch.equal(cpu.indices, gpu.indices.cpu())
    torch.testing.assert_close(cpu.feature_radius, gpu.feature_radius.cpu(), rtol=1e-4, atol=1e-5)
