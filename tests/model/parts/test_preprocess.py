"""The SigLIP and Swin views against the golden `images_clip`, `images` and `padding_mask` (bitwise)."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pipeline.model.parts.preprocess import (
    SWIN_MEAN,
    SWIN_PAD_VALUE,
    SWIN_STD,
    shortest_edge_size,
    siglip_view,
    swin_view,
)

from ..reference import GOLDEN

SIGLIP_SIZE = 54  # hparams.json "siglip_image_size"
CANVAS = 128  # hparams.json "swin_branch_image_size" (mask config INPUT.IMAGE_SIZE)

# (png, inputs file, key prefix, expected resized (h', w'))
CASES = {
    "image": ("reference/image.png", "reference/inputs.safetensors", "", (107, 128)),
    "video.frame0": ("video/frame0.png", "video/inputs.safetensors", "frames.0.", (72, 128)),
    "video.frame1": ("video/frame1.png", "video/inputs.safetensors", "frames.1.", (72, 128)),
}


def load_case(name: str) -> tuple[Image.Image, dict[str, torch.Tensor], tuple[int, int]]:
    """(decoded RGB PNG, that case's golden inputs without the frame prefix, expected resized size)."""
    png, inputs, prefix, resized_hw = CASES[name]
    image = Image.open(GOLDEN / png).convert("RGB")
    tensors = {k.removeprefix(prefix): v for k, v in load_file(GOLDEN / inputs).items() if k.startswith(prefix)}
    return image, tensors, resized_hw


@pytest.mark.parametrize("case", sorted(CASES))
def test_siglip_view_is_bitwise_golden(case: str) -> None:
    image, golden, _ = load_case(case)
    view = siglip_view(image, SIGLIP_SIZE)
    assert view.dtype == torch.float32 and view.shape == (3, SIGLIP_SIZE, SIGLIP_SIZE)
    assert torch.equal(view, golden["images_clip"][0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_swin_view_is_bitwise_golden(case: str) -> None:
    image, golden, resized_hw = load_case(case)
    view = swin_view(image, CANVAS)
    assert view.pixels.dtype == torch.float32 and view.pixels.shape == (3, CANVAS, CANVAS)
    assert view.padding_mask.dtype == torch.bool and view.padding_mask.shape == (CANVAS, CANVAS)
    assert torch.equal(view.pixels, golden["images"][0])
    assert torch.equal(view.padding_mask, golden["padding_mask"])
    assert view.resized_hw == resized_hw
    # resized_hw is what post-processing would otherwise read off the padding mask's bounding box.
    valid = ~golden["padding_mask"]
    assert (int(valid.any(1).sum()), int(valid.any(0).sum())) == resized_hw


def test_numpy_and_pil_inputs_agree() -> None:
    image, _, _ = load_case("image")
    array = np.asarray(image)
    assert torch.equal(siglip_view(array, SIGLIP_SIZE), siglip_view(image, SIGLIP_SIZE))
    a, b = swin_view(array, CANVAS), swin_view(image, CANVAS)
    assert torch.equal(a.pixels, b.pixels) and torch.equal(a.padding_mask, b.padding_mask)


def test_padded_pixels_hold_the_normalised_pad_value() -> None:
    image, _, (h, _) = load_case("image")
    pixels = swin_view(image, CANVAS).pixels
    expected = (torch.full((3,), SWIN_PAD_VALUE) - torch.tensor(SWIN_MEAN)) / torch.tensor(SWIN_STD)
    assert torch.equal(pixels[:, h:, :], expected.view(3, 1, 1).expand(3, CANVAS - h, CANVAS))
    torch.testing.assert_close(expected, torch.tensor([0.074065, 0.205182, 0.426492]), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (80, 96, (107, 128)),  # the golden image: 128/80 makes the long side 153.6 > 128, so 128/96 rules
        (96, 80, (128, 107)),  # portrait: padding goes to the right
        (72, 128, (72, 128)),  # the golden frames: already at the target size
        (10, 20, (64, 128)),  # upscaling
        (50, 50, (128, 128)),  # square: no padding
        (768, 1024, (96, 128)),  # downscaling
    ],
)
def test_shortest_edge_size(height: int, width: int, expected: tuple[int, int]) -> None:
    assert shortest_edge_size(height, width, CANVAS) == expected


def test_portrait_pads_on_the_right() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(96, 80, 3), dtype=np.uint8)
    view = swin_view(image, CANVAS)
    assert view.resized_hw == (128, 107)
    assert not view.padding_mask[:, :107].any() and view.padding_mask[:, 107:].all()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8), dtype=np.uint8), "RGB"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "RGB"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "empty"),
        (Image.new("L", (8, 8)), "RGB"),
        (torch.zeros(8, 8, 3, dtype=torch.uint8), "numpy array or a PIL image"),
    ],
)
def test_bad_images_raise(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        siglip_view(image, SIGLIP_SIZE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        swin_view(image, CANVAS)  # type: ignore[arg-type]


def test_bad_sizes_raise() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="size"):
        siglip_view(image, 0)
    with pytest.raises(ValueError, match="canvas"):
        swin_view(image, 0)
