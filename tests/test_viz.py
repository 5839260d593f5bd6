"""Pictures: token overlays and dots, mask overlays, the per-method comparison and its CLI."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pipeline.viz import (
    compare_methods,
    main,
    mask_outline,
    mask_overlay,
    side_by_side,
    token_centres,
    token_dots,
    token_overlay,
)

GOLDEN = Path("/work/shared/reference/golden-tiny")


def test_token_overlay_shades_only_pruned_tokens():
    image = Image.new("RGB", (40, 20), (200, 100, 50))  # a 2x4 grid of 10-pixel tokens
    out = token_overlay(image, [0, 6], (2, 4), shade=0.5, outline=(0, 255, 0))
    assert out.size == image.size
    assert out.getpixel((5, 5)) == (200, 100, 50)  # inside token 0
    assert out.getpixel((25, 15)) == (200, 100, 50)  # inside token 6 (row 1, col 2)
    assert out.getpixel((15, 5)) == (100, 50, 25)  # token 1, pruned
    assert out.getpixel((0, 0)) == (0, 255, 0)  # token 0's border


def test_side_by_side():
    a, b = Image.new("RGB", (30, 20)), Image.new("RGB", (10, 40))
    canvas = side_by_side([a, b], ["a", "b"], gap=5)
    assert canvas.size == (30 + 10 + 3 * 5, 40 + 18 + 10)
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        side_by_side([a, b], ["a"])


def test_mask_overlay_changes_only_masked_pixels():
    image = Image.new("RGB", (12, 10), (100, 100, 100))
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:8, 3:9] = True
    out = np.asarray(mask_overlay(image, mask, (0, 200, 0), 0.5, outline=1))
    before = np.asarray(image)
    assert (out[~mask] == before[~mask]).all()
    assert (out[mask] != before[mask]).any(axis=-1).all()
    assert tuple(out[4, 5]) == (50, 150, 50)  # interior: half-way blend
    assert tuple(out[2, 3]) == (0, 200, 0)  # outline: opaque colour
    assert tuple(out[7, 8]) == (0, 200, 0)


def test_mask_outline_is_the_inner_border():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:5, 1:5] = True
    edge = mask_outline(mask, 1)
    assert edge.sum() == 12 and not edge[2:4, 2:4].any() and (edge <= mask).all()
    assert mask_outline(mask, 2).sum() == 16  # a 4x4 square has no pixel 2 steps inside
    assert mask_outline(np.ones((3, 3), dtype=bool), 1).sum() == 8  # the frame's edge counts as outside


def test_mask_overlay_rejects_bad_input():
    image = Image.new("RGB", (12, 10))
    with pytest.raises(ValueError, match="does not match"):
        mask_overlay(image, np.zeros((12, 10), dtype=bool))
    with pytest.raises(ValueError, match="alpha"):
        mask_overlay(image, np.zeros((10, 12), dtype=bool), alpha=1.5)


def test_token_centres_squash_the_grid_over_the_frame():
    centres = token_centres((2, 4), (40, 20))
    assert centres.shape == (8, 2)
    assert tuple(centres[0]) == (5.0, 5.0) and tuple(centres[6]) == (25.0, 15.0)


def test_token_dots_fill_kept_tokens_only():
    image = Image.new("RGB", (40, 20), (0, 0, 255))  # a 2x4 grid of 10-pixel tokens
    out = token_dots(image, [6], (2, 4), radius=3, kept_colour=(255, 255, 0), pruned_colour=(255, 0, 0))
    assert out.size == image.size
    assert out.getpixel((25, 15)) == (255, 255, 0)  # token 6's centre: filled
    assert out.getpixel((5, 5)) == (0, 0, 255)  # token 0, pruned: a hollow ring leaves the centre
    ring = np.asarray(out)[0:10, 0:10]
    assert ((ring == (255, 0, 0)).all(axis=-1)).any()  # ... but its ring is drawn
    assert out.getpixel((0, 0)) == (0, 0, 255)  # cell corners untouched
    bare = token_dots(image, [6], (2, 4), radius=3, pruned_colour=None)
    assert (np.asarray(bare)[0:10, 0:10] == (0, 0, 255)).all()
    with pytest.raises(ValueError, match=r"kept indices must be in \[0, 8\)"):
        token_dots(image, [8], (2, 4))


@dataclass
class _FakeSegmentation:
    mask: np.ndarray
    kept: np.ndarray
    score: float
    grid_radius: float
    feature_radius: float = 0.0


class _FakePredictor:
    """Stands in for HyperSegPredictor: records the pruning each predict sees."""

    def __init__(self, pruning):
        self.pruning = pruning
        self.model = SimpleNamespace(config=SimpleNamespace(vision=SimpleNamespace(grid=(3, 3))))
        self.seen = []

    def predict(self, image, expressions, task="referring"):
        self.seen.append((self.pruning, tuple(expressions), task))
        mask = np.zeros((image.height, image.width), dtype=bool)
        mask[: image.height // 2] = True
        return [_FakeSegmentation(mask, np.array([0, 4, 8]), 0.5, 1.0)]


def test_compare_methods_sets_and_restores_pruning():
    from pipeline.model.hyperseg.predictor import PruningConfig

    original = PruningConfig("evtp", 0.5, (("alpha", 2.0),), "original")
    predictor = _FakePredictor(original)
    image = Image.new("RGB", (30, 20), (10, 20, 30))
    out = compare_methods(predictor, image, "it", ["grid", "random"], keep=3, task="reasoning", panel_size=60)
    assert predictor.pruning is original
    assert [(p.method, p.keep, p.options, p.position_ids) for p, _, _ in predictor.seen] == [
        ("grid", 3, (), "original"),
        ("random", 3, (), "original"),
    ]
    assert all(e == ("it",) and t == "reasoning" for _, e, t in predictor.seen)
    assert out.size == (2 * 60 + 3 * 8, 20 + 18 + 2 * 8 + 40)  # header + titles + gaps + 60x40 panels

    class Broken(_FakePredictor):
        def predict(self, image, expressions, task="referring"):
            raise RuntimeError("boom")

    broken = Broken(original)
    with pytest.raises(RuntimeError, match="boom"):
        compare_methods(broken, image, "it", ["grid"])
    assert broken.pruning is original
    with pytest.raises(ValueError, match="at least one method"):
        compare_methods(predictor, image, "it", [])


def test_import_is_cheap():
    code = "import sys, pipeline.viz; print('transformers' in sys.modules, 'ray' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.skipif(not (GOLDEN / "checkpoint").is_dir(), reason="golden tiny checkpoint absent")
def test_cli_on_the_golden_tiny_checkpoint(tmp_path):
    out = tmp_path / "sub" / "overlay.png"
    argv = [
        "--checkpoint", str(GOLDEN / "checkpoint"),
        "--image", str(GOLDEN / "reference" / "image.png"),
        "--expression", "the red box on the left",
        "--methods", "evtp,grid,random",
        "--keep", "0.2",
        "--panel-size", "192",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == out
    picture = Image.open(out)
    assert picture.size == (3 * 192 + 4 * 8, 20 + 18 + 2 * 8 + 160)  # the 96x80 frame scaled to 192x160
    assert picture.format == "PNG"
