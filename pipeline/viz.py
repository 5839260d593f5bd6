"""Pictures that say more than numbers: which visual tokens a selection kept, over their frame."""

from collections.abc import Sequence

from PIL import Image, ImageDraw

from .pruning.geometry import Grid


def token_overlay(
    image: Image.Image,
    kept: Sequence[int],
    grid: Grid,
    *,
    shade: float = 0.3,
    outline: tuple[int, int, int] = (255, 230, 0),
) -> Image.Image:
    """The frame with pruned tokens shaded and kept tokens outlined.

    Args:
        image: the frame the tokens came from (any size; the grid is laid over it evenly).
        kept: raster indices of the kept tokens.
        grid: ``(h, w)`` token grid.
        shade: brightness left to pruned tokens, in ``[0, 1]``.
        outline: colour of the kept tokens' borders.

    Returns:
        A new RGB image of the same size.
    """
    h, w = grid
    base = image.convert("RGB")
    out = Image.blend(Image.new("RGB", base.size), base, shade)
    draw = ImageDraw.Draw(out)
    width, height = base.size
    for index in kept:
        row, col = divmod(int(index), w)
        box = (col * width // w, row * height // h, (col + 1) * width // w, (row + 1) * height // h)
        out.paste(base.crop(box), box[:2])
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=outline)
    return out


def side_by_side(images: Sequence[Image.Image], titles: Sequence[str], *, gap: int = 8) -> Image.Image:
    """Images in one row with a title above each (PIL's default font)."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    title_height = 18
    width = sum(im.width for im in images) + gap * (len(images) + 1)
    height = max(im.height for im in images) + title_height + 2 * gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for im, title in zip(images, titles, strict=True):
        draw.text((x, gap // 2), title, fill=(0, 0, 0))
        canvas.paste(im.convert("RGB"), (x, gap + title_height))
        x += im.width + gap
    return canvas
