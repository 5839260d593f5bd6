"""Pictures that say more than numbers: which visual tokens a selection kept, over their frame, and the mask it led to.

Run as ``python -m pipeline.viz --image PATH --expression TEXT --checkpoint DIR --out PNG`` for one panel per
pruning method. The model is imported inside the functions that need it, so ``import pipeline.viz`` stays cheap.
"""

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .config import PruningConfig
from .pruning.geometry import Grid

logger = logging.getLogger(__name__)

DEFAULT_METHODS = ("evtp", "kcenter", "divprune", "visionzip", "grid", "random")
MASK_COLOUR = (0, 230, 255)  # cyan: stands out on skin, foliage and the golden image's magenta-red gradient
KEPT_COLOUR = (255, 255, 255)
PRUNED_COLOUR = (0, 0, 0)


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


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The mask's pixels within ``width`` steps (4-neighbourhood) of a non-mask pixel or the frame's edge.

    Args:
        mask: ``(H, W)`` bool.
        width: outline thickness in pixels.

    Returns:
        ``(H, W)`` bool, a subset of ``mask``.
    """
    interior = np.asarray(mask, dtype=bool)
    for _ in range(width):
        padded = np.pad(interior, 1, constant_values=False)
        # Erode by one pixel: a pixel stays if it and its four neighbours are all inside.
        interior = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return np.asarray(mask, dtype=bool) & ~interior


def mask_overlay(
    image: Image.Image,
    mask: np.ndarray,
    colour: tuple[int, int, int] = MASK_COLOUR,
    alpha: float = 0.5,
    *,
    outline: int = 2,
) -> Image.Image:
    """The frame with the mask tinted in ``colour`` and its outline drawn opaque; other pixels untouched.

    Args:
        image: the frame, ``W x H``.
        mask: ``(H, W)`` bool, the frame's size.
        colour: RGB of the tint and the outline.
        alpha: tint opacity in ``[0, 1]``.
        outline: outline thickness in pixels, inside the mask (0 for none).

    Returns:
        A new RGB image of the same size.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask shape {mask.shape} does not match the image's (H, W) {(image.height, image.width)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    tint = np.asarray(colour, dtype=np.float32)
    pixels[mask] = (1.0 - alpha) * pixels[mask] + alpha * tint
    if outline > 0:
        pixels[mask_outline(mask, outline)] = tint
    return Image.fromarray(np.rint(pixels).astype(np.uint8))


def token_centres(grid: Grid, size: tuple[int, int]) -> np.ndarray:
    """Pixel centres ``(x, y)`` of every token with the grid laid evenly over a ``size = (W, H)`` frame.

    The SigLIP view squashes the frame to a square (aspect not kept), so token ``(row, col)`` covers
    ``[col/w, (col+1)/w) x [row/h, (row+1)/h)`` of the frame's width and height.

    Returns:
        ``(h*w, 2)`` float64 in raster order.
    """
    h, w = grid
    width, height = size
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.stack([(cols + 0.5) * width / w, (rows + 0.5) * height / h], axis=1)


def token_dots(
    image: Image.Image,
    kept: Sequence[int] | np.ndarray,
    grid: Grid,
    *,
    radius: float | None = None,
    kept_colour: tuple[int, int, int] = KEPT_COLOUR,
    pruned_colour: tuple[int, int, int] | None = PRUNED_COLOUR,
) -> Image.Image:
    """The frame with a dot at every token centre: kept tokens filled (dark rim), pruned ones hollow.

    Args:
        image: the frame (any size; the grid is laid over it evenly, see ``token_centres``).
        kept: raster indices of the kept tokens.
        grid: ``(h, w)`` token grid.
        radius: dot radius in pixels; default 30 % of the smaller cell side, at least 1.
        kept_colour: fill of the kept dots.
        pruned_colour: ring colour of the pruned tokens; None draws no pruned dots.

    Returns:
        A new RGB image of the same size.
    """
    h, w = grid
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    if kept.size and (kept.min() < 0 or kept.max() >= h * w):
        raise ValueError(f"kept indices must be in [0, {h * w}) for a {h}x{w} grid, got {kept.min()}..{kept.max()}")
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    r = radius if radius is not None else max(1.0, 0.3 * min(out.width / w, out.height / h))
    centres = token_centres(grid, out.size)
    is_kept = np.zeros(h * w, dtype=bool)
    is_kept[kept] = True
    rim = tuple(255 - c for c in kept_colour)  # the opposite colour keeps a dot visible on its own colour
    for index, (x, y) in enumerate(centres):
        if is_kept[index]:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=kept_colour, outline=rim)
        elif pruned_colour is not None:
            q = max(1.0, 0.5 * r)
            draw.ellipse((x - q, y - q, x + q, y + q), outline=pruned_colour)
    return out


def _scaled(image: Image.Image, longest: int) -> Image.Image:
    """The frame resized so its longer side is ``longest`` pixels (tiny frames need it to show 27 x 27 dots)."""
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, resample=Image.Resampling.BICUBIC)


def _with_header(canvas: Image.Image, text: str, height: int = 20) -> Image.Image:
    """``canvas`` with a line of text above it."""
    out = Image.new("RGB", (canvas.width, canvas.height + height), (255, 255, 255))
    ImageDraw.Draw(out).text((8, 4), text, fill=(0, 0, 0))
    out.paste(canvas, (0, height))
    return out


def compare_methods(
    predictor,
    image: Image.Image,
    expression: str,
    methods: Sequence[str] = DEFAULT_METHODS,
    keep: float | int = 0.2,
    task: str = "referring",
    *,
    panel_size: int = 324,
    header: str | None = None,
) -> Image.Image:
    """One panel per pruning method: the predicted mask tinted, the kept tokens as dots, over the frame.

    Sets ``predictor.pruning`` to each method in turn (the position-id policy of the current config is
    kept, method options are reset) and restores the original afterwards, even on error.

    Args:
        predictor: a ``pipeline.model.HyperSegPredictor``.
        image: the RGB frame.
        expression: the referring text.
        methods: ``pipeline.pruning.METHODS`` names, one panel each.
        keep: the pruning budget, a ratio in (0, 1] or a count.
        task: prompt wording, as ``HyperSegPredictor.predict``.
        panel_size: longer side of each panel in pixels (27 x 12 by default, 12 px per token).
        header: a line above the panels; default the expression, task and budget.

    Returns:
        An RGB image ``len(methods)`` panels wide, each titled with method, K, score and grid radius.
    """
    if len(methods) == 0:
        raise ValueError("compare_methods needs at least one method")
    grid = tuple(predictor.model.config.vision.grid)
    frame = image.convert("RGB")
    original = predictor.pruning
    panels, titles = [], []
    try:
        for method in methods:
            predictor.pruning = PruningConfig(method=method, keep=keep, position_ids=original.position_ids)
            seg = predictor.predict(frame, [expression], task)[0]
            logger.info(
                "%s: K=%d score=%.4f grid radius=%.3f feature radius=%.4f mask %.1f%% of the frame",
                method, len(seg.kept), seg.score, seg.grid_radius, seg.feature_radius, 100 * seg.mask.mean(),
            )  # fmt: skip
            scaled = _scaled(frame, panel_size)
            mask = Image.fromarray(seg.mask).resize(scaled.size, resample=Image.Resampling.NEAREST)
            panels.append(token_dots(mask_overlay(scaled, np.asarray(mask)), seg.kept, grid))
            titles.append(f"{method} K={len(seg.kept)} score={seg.score:.3f} grid r={seg.grid_radius:.2f}")
    finally:
        predictor.pruning = original
    canvas = side_by_side(panels, titles)
    return _with_header(canvas, header if header is not None else f'"{expression}"  ({task}, keep {keep})')


def _keep(text: str) -> float | int:
    """``--keep``: a ratio if it has a decimal point, else a token count."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI's arguments (see ``python -m pipeline.viz --help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.viz",
        description="Kept tokens and predicted mask of one image and expression, one panel per pruning method.",
    )
    parser.add_argument("--image", type=Path, required=True, help="RGB image file")
    parser.add_argument("--expression", required=True, help="the referring expression")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="HyperSeg or InstructSeg checkpoint, released layout")
    weights.add_argument("--preset", help="a preset name (tiny, instructseg-tiny, hyperseg-3b, ...), RANDOM weights")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated pruning methods")
    parser.add_argument("--keep", type=_keep, default=0.2, help="ratio in (0, 1] (e.g. 0.2) or a count (e.g. 64)")
    parser.add_argument("--task", default="referring", choices=("referring", "reasoning", "video"))
    parser.add_argument("--panel-size", type=int, default=324, help="longer side of each panel in pixels")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """The CLI; returns the written path."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .model import load  # lazily: the model pulls in transformers

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.checkpoint is not None:
        predictor = load.from_pretrained(args.checkpoint)
        source = f"weights {args.checkpoint.parent.name}/{args.checkpoint.name}"
    else:
        predictor = load.from_preset(args.preset)
        source = f"preset {args.preset}, RANDOM WEIGHTS: masks mean nothing"
        logger.warning("preset %r has random weights: the masks mean nothing", args.preset)
    image = Image.open(args.image).convert("RGB")
    header = f'"{args.expression}"  ({args.task}, keep {args.keep}; {source})'
    picture = compare_methods(
        predictor, image, args.expression, methods, args.keep, args.task, panel_size=args.panel_size, header=header
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    print(f"wrote {args.out}")  # the CLI's one line of output
    return args.out


def run_overlay(output: str, shards: str, *, count: int = 4, longest: int = 256) -> Image.Image:
    """The first expression of a run's first ``count`` samples, side by side: a frame with the predicted mask and
    the kept tokens.

    Video expressions show the frame where their mask is largest; the title gives the expression and, when the
    run has metrics, its IoU (images) or J (videos).
    """
    from .data import Sample, read_samples
    from .results import decode_mask, load

    predictions = load(output, "predictions")
    if predictions.empty:
        raise ValueError(f"{output} has no predictions to draw")
    tokens, metrics = load(output, "tokens"), load(output, "metrics")
    chosen = predictions[["sample_key", "expression_id"]].drop_duplicates("sample_key").head(count)
    wanted = set(chosen.sample_key)
    samples = {s.key: s for s in read_samples(shards) if isinstance(s, Sample) and s.key in wanted}
    panels, titles = [], []
    for key, expression_id in chosen.itertuples(index=False):
        rows = predictions[(predictions.sample_key == key) & (predictions.expression_id == expression_id)]
        masks = [decode_mask(r) for _, r in rows.iterrows()]
        largest = int(np.argmax([m.sum() for m in masks]))  # the first frame, if every mask is empty
        row = rows.iloc[largest]
        frame = Image.fromarray(samples[key].frames()[int(row.frame_index)])
        panel = mask_overlay(frame, masks[largest])
        frame_tokens = tokens[(tokens.sample_key == key) & (tokens.frame_index == row.frame_index)]
        own = frame_tokens[frame_tokens.expression_id.isna() | (frame_tokens.expression_id == expression_id)]
        if len(own):
            t = own.iloc[0]
            grid = (int(t.grid_h), int(t.grid_w))
            panel = token_dots(_scaled(panel, longest), t.kept, grid, kept_colour=(255, 200, 0), pruned_colour=None)
        else:  # keep 1.0 (method none) stores no selection
            panel = _scaled(panel, longest)
        text = next(e.text for e in samples[key].expressions if e.id == expression_id)
        score = metrics[(metrics.sample_key == key) & (metrics.expression_id == expression_id)]
        if len(score):
            text = f"{'J' if samples[key].is_video else 'IoU'} {score.j.iloc[0]:.2f}: {text}"
        panels.append(panel)
        titles.append(text[: panel.width // 6])  # PIL's default font is about 6 pixels a character
    return side_by_side(panels, titles)


def accuracy_speed_plot(
    points: Sequence[tuple[str, str, float, float]],
    *,
    x_label: str = "frames / s",
    y_label: str = "J&F",
    size: tuple[int, int] = (640, 420),
) -> Image.Image:
    """A scatter plot of ``(series, label, throughput, accuracy)`` points, e.g. series = method, label = keep,
    drawn by matplotlib (Agg) and returned as a PIL image of ``size`` pixels.

    Each series has its colour, its points joined in order of throughput and an entry in the legend; the label
    is written beside each point.
    """
    if not points:
        raise ValueError("no points to plot")
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    dpi = 100
    figure, axes = plt.subplots(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    try:
        for name in dict.fromkeys(p[0] for p in points):
            own = sorted((x, y, label) for series, label, x, y in points if series == name)
            axes.plot([x for x, _, _ in own], [y for _, y, _ in own], "o-", markersize=5, label=name)
            for x, y, label in own:
                axes.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color="0.3")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


if __name__ == "__main__":
    main()
