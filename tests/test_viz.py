"""Token overlays: kept patches keep their pixels, pruned ones are shaded."""

import pytest
from PIL import Image

from pipeline.viz import side_by_side, token_overlay


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
