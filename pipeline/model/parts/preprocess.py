"""The two views of an RGB image that HyperSeg consumes.

- `siglip_view`: the SigLIP branch (`images_clip`), as `SiglipImageProcessor` with the checkpoint's
  `siglip_preprocessor_config.json`: squash-resize (bicubic), rescale by 1/255, normalise.
- `swin_view`: the mask branch (`images`), as the released detectron2 dataset mapper
  (congvvc/HyperSeg@5cfcf52:hyperseg/model/datasets_mapper/coco_instance_mapper.py): `ResizeShortestEdge(canvas,
  max_size=canvas)`, then `FixedSizeCrop((canvas, canvas))`, which pads bottom/right with 128 on the 0-255
  image, then the model's `(x - pixel_mean) / pixel_std`.

Both reproduce the golden tensors bitwise; the order and dtype of each arithmetic step below is what makes that
so (e.g. rescaling in float32 instead of float64 moves SigLIP pixels by up to 1.2e-7).
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

SIGLIP_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SIGLIP_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
# detectron2's ImageNet statistics on the 0-255 scale, RGB order (mask config `MODEL.PIXEL_MEAN/PIXEL_STD`).
SWIN_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
SWIN_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)
# `FixedSizeCrop`'s default image `pad_value` (facebookresearch/detectron2@02b5c4e:detectron2/data/transforms/
# augmentation_impl.py); HyperSeg only overrides the segmentation pad value.
SWIN_PAD_VALUE = 128.0


def _as_rgb_uint8(image: np.ndarray | Image.Image) -> np.ndarray:
    """(height, width, 3) uint8 array of `image`, or ValueError."""
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (height, width, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _normalise_chw(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(h, w, 3) float32 array -> (3, h, w) float32 tensor `(x - mean) / std`, computed in float32."""
    chw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (chw - mean_t) / std_t


def siglip_view(
    image: np.ndarray | Image.Image,
    size: int,
    mean: tuple[float, float, float] = SIGLIP_MEAN,
    std: tuple[float, float, float] = SIGLIP_STD,
) -> torch.Tensor:
    """The SigLIP view: squash to size x size (aspect not kept), rescale, normalise.

    Args:
        image: (height, width, 3) uint8 RGB array or PIL image.
        size: output side (384 for HyperSeg-3B, 54 for the tiny checkpoint).
        mean, std: per-channel normalisation on the 0-1 scale.

    Returns:
        (3, size, size) float32.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    array = _as_rgb_uint8(image)
    resized = np.asarray(Image.fromarray(array).resize((size, size), resample=Image.Resampling.BICUBIC))
    # As SiglipImageProcessor: uint8 * (1/255) in float64, then float32; normalisation happens in float32.
    rescaled = (resized * (1.0 / 255.0)).astype(np.float32)
    return _normalise_chw(rescaled, mean, std)


def shortest_edge_size(height: int, width: int, canvas: int) -> tuple[int, int]:
    """(h', w') of detectron2's `ResizeShortestEdge(canvas, max_size=canvas)`: the long side ends up at `canvas`.

    Scale by canvas / short side; if the long side then exceeds `canvas`, rescale it to `canvas`; round each side
    half up (`int(x + 0.5)`, as `ResizeShortestEdge.get_output_shape`).
    """
    scale = canvas / min(height, width)
    new_h, new_w = (canvas, scale * width) if height < width else (scale * height, canvas)
    if max(new_h, new_w) > canvas:
        scale = canvas / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


@dataclass(frozen=True)
class SwinView:
    """The mask-branch view of one image.

    Attributes:
        pixels: (3, canvas, canvas) float32, normalised; padded pixels hold the normalised pad value.
        padding_mask: (canvas, canvas) bool, True on padded pixels (rows >= h' or columns >= w').
        resized_hw: (h', w'), the resized image's extent at the top-left of the canvas; post-processing crops
            upsampled mask logits to it before resizing them to the original size.
    """

    pixels: torch.Tensor
    padding_mask: torch.Tensor
    resized_hw: tuple[int, int]


def swin_view(
    image: np.ndarray | Image.Image,
    canvas: int,
    mean: tuple[float, float, float] = SWIN_MEAN,
    std: tuple[float, float, float] = SWIN_STD,
    pad_value: float = SWIN_PAD_VALUE,
) -> SwinView:
    """The Swin view: long side resized to `canvas` (bilinear), placed top-left, padded, normalised.

    Args:
        image: (height, width, 3) uint8 RGB array or PIL image.
        canvas: side of the square canvas (`INPUT.IMAGE_SIZE`: 1024 for HyperSeg-3B, 128 for the tiny one).
        mean, std: per-channel normalisation on the 0-255 scale.
        pad_value: value of padded pixels on the 0-255 scale, before normalisation.

    Returns:
        `SwinView` with pixels (3, canvas, canvas), padding_mask (canvas, canvas) and resized_hw (h', w').
    """
    if canvas <= 0:
        raise ValueError(f"canvas must be positive, got {canvas}")
    array = _as_rgb_uint8(image)
    new_h, new_w = shortest_edge_size(array.shape[0], array.shape[1], canvas)
    # detectron2's ResizeTransform resizes uint8 images through PIL (bilinear by default), even to the same size.
    resized = np.asarray(Image.fromarray(array).resize((new_w, new_h), resample=Image.Resampling.BILINEAR))
    padded = np.full((canvas, canvas, 3), pad_value, dtype=np.float32)
    padded[:new_h, :new_w] = resized
    padding_mask = torch.ones(canvas, canvas, dtype=torch.bool)
    padding_mask[:new_h, :new_w] = False
    return SwinView(pixels=_normalise_chw(padded, mean, std), padding_mask=padding_mask, resized_hw=(new_h, new_w))
