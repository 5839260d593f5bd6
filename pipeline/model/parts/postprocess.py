"""From decoder mask logits to the released top-1 mask at the original image size.

Follows HyperSeg's ``eval_seg`` and ``SEG_instance_inference`` (congvvc/HyperSeg@5cfcf52:hyperseg/model/
language_model/llava_phi.py) and the top-1 choice of ``eval/eval_refcoco.py: compute_metric`` (model.md §1.8):

1. bilinear upsampling of the stride-4 logits to the padded square canvas (``align_corners=False``);
2. detectron2 ``sem_seg_postprocess``: crop to the unpadded extent, bilinear resize to the original size;
3. ``score = sigmoid(SEG logit) * mean(sigmoid(logit) over the mask logit > 0)``;
4. the query with the highest score; its mask is ``logit > 0``.

Beside the score, the chosen query's quality signals for pseudo-labelling (``Quality``): its two factors apart and
SAM's stability score, all from the logits already at the original size.

The released code scores "instances" in the order of an unsorted top-k over all queries; everything here is in
query order (the per-query numbers are the same). ``best_query`` is steps 1-4 bringing to full resolution only the
queries that can still win.
"""

import dataclasses
from dataclasses import dataclass

import torch
from torch.nn import functional as F

# Added to the foreground pixel count in the mask score, as released (keeps empty masks at score 0).
MASK_SCORE_EPS = 1e-6
# Queries brought to full resolution together by ``best_query``: a few (H, W) planes stay in cache, where all 100
# at once are hundreds of MB (2.5x faster on a 2-core CPU at 4-8 than all at once).
QUERY_CHUNK = 4
# SAM's stability score: the IoU of the masks at logit > +offset and > -offset (facebookresearch/segment-anything,
# segment_anything/utils/amg.py ``calculate_stability_score``; its automatic mask generator uses offset 1.0).
STABILITY_OFFSET = 1.0


@dataclass(frozen=True)
class TopMask:
    """The chosen query.

    Attributes:
        query: its index among the decoder queries.
        score: its combined score.
        mask: its binary mask at the original size, ``logits > 0``, bool (H, W).
        scored: how many queries were brought to the original size to choose it (all of them for ``top1``).
        quality: its quality signals (``mask_quality``).
    """

    query: int
    score: float
    mask: torch.Tensor
    scored: int = 0
    quality: "Quality | None" = None


@dataclass(frozen=True)
class Quality:
    """A chosen mask's quality signals; ``score`` is ``seg_score * mask_score`` up to float rounding.

    Attributes:
        seg_score: ``sigmoid(SEG logit)``, how sure the model is that the expression has a target here.
        mask_score: mean ``sigmoid(logit)`` over the mask (0 for an empty mask), how confident its pixels are.
        stability: |logit > +1| / |logit > -1| (the IoU of the two masks, the first inside the second), NaN when
            no pixel is above -1, as SAM's 0 / 0.
    """

    seg_score: float
    mask_score: float
    stability: float


def mask_quality(logits: torch.Tensor, seg_logit: torch.Tensor) -> Quality:
    """The quality signals of one query from its full-resolution mask logits ``(H, W)`` and its SEG logit."""
    if logits.ndim != 2:
        raise ValueError(f"mask logits must be (H, W), got {tuple(logits.shape)}")
    # Dense ops only: gathering the mask's pixels by boolean indexing costs more than all of these together.
    foreground = logits > 0
    inside = int(torch.count_nonzero(foreground))
    mask_score = float((logits.sigmoid() * foreground).sum()) / (inside + MASK_SCORE_EPS)
    high = int(torch.count_nonzero(logits > STABILITY_OFFSET))
    low = int(torch.count_nonzero(logits > -STABILITY_OFFSET))
    return Quality(float(seg_logit.float().sigmoid()), mask_score, high / low if low else float("nan"))


def unpadded_extent(padding_mask: torch.Tensor) -> tuple[int, int]:
    """``(h', w')`` of the image on the padded canvas, from the bounding box of ``~padding_mask``.

    Args:
        padding_mask: bool (canvas_h, canvas_w), True on padded pixels. The mapper pads at the bottom and right only.
    """
    if padding_mask.ndim != 2 or padding_mask.dtype != torch.bool:
        raise ValueError(
            f"padding_mask must be a 2-D bool tensor, got {padding_mask.dtype} {tuple(padding_mask.shape)}"
        )
    rows = torch.nonzero((~padding_mask).any(dim=1)).flatten()
    cols = torch.nonzero((~padding_mask).any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("padding_mask marks every pixel as padding")
    if rows[0] != 0 or cols[0] != 0:
        # The crop ``[:h', :w']`` below is only right for an image placed at the top-left corner.
        raise ValueError(f"image must start at the canvas origin, found its box at ({int(rows[0])}, {int(cols[0])})")
    return int(rows[-1]) + 1, int(cols[-1]) + 1


def upsample_to_original(
    pred_masks: torch.Tensor, canvas: int, resized_hw: tuple[int, int], original_hw: tuple[int, int]
) -> torch.Tensor:
    """Mask logits at the original image size.

    Args:
        pred_masks: decoder mask logits of one image, (queries, h, w), on the padded canvas at stride 4.
        canvas: side of the padded square input (1024 for HyperSeg-3B, ``INPUT.IMAGE_SIZE``).
        resized_hw: the image's extent on the canvas before padding (see ``unpadded_extent``).
        original_hw: the original image's (height, width).

    Returns:
        Mask logits, (queries, height, width).
    """
    if pred_masks.ndim != 3:
        raise ValueError(f"pred_masks must be (queries, h, w), got {tuple(pred_masks.shape)}")
    resized_h, resized_w = resized_hw
    if not (0 < resized_h <= canvas and 0 < resized_w <= canvas):
        raise ValueError(f"resized_hw {tuple(resized_hw)} does not fit in a {canvas} x {canvas} canvas")
    if min(original_hw) <= 0:
        raise ValueError(f"original_hw must be positive, got {tuple(original_hw)}")
    # The released code upsamples to the whole padded canvas, then crops. When the canvas is a whole multiple
    # of the logits' size, the rows and columns past the crop are left out of the input instead (keeping one
    # more than the crop reads, so no border clamp moves): the scale factor and every kept output value are
    # bit-identical, and the padding is never computed.
    h, w = pred_masks.shape[-2:]
    if canvas % h == 0 and canvas % w == 0:
        rows, cols = min(h, -(-resized_h * h // canvas) + 1), min(w, -(-resized_w * w // canvas) + 1)
        size = (rows * canvas // h, cols * canvas // w)
        pred_masks = pred_masks[:, :rows, :cols]
    else:
        size = (canvas, canvas)
    logits = F.interpolate(pred_masks[None], size=size, mode="bilinear", align_corners=False)
    logits = logits[:, :, :resized_h, :resized_w]
    logits = F.interpolate(logits, size=tuple(original_hw), mode="bilinear", align_corners=False)
    return logits[0]


def score_queries(mask_logits: torch.Tensor, seg_logits: torch.Tensor) -> torch.Tensor:
    """Released per-query score: ``sigmoid(SEG) * sum(sigmoid(m) * [m > 0]) / (sum([m > 0]) + 1e-6)``.

    Args:
        mask_logits: full-resolution mask logits, (queries, H, W).
        seg_logits: SEG logits, (queries,) or (queries, 1).

    Returns:
        Scores, (queries,).
    """
    if mask_logits.ndim != 3:
        raise ValueError(f"mask_logits must be (queries, H, W), got {tuple(mask_logits.shape)}")
    num_queries = mask_logits.shape[0]
    if seg_logits.shape not in ((num_queries,), (num_queries, 1)):
        raise ValueError(f"seg_logits must be ({num_queries},) or ({num_queries}, 1), got {tuple(seg_logits.shape)}")
    # Same reduction layout as the release (flatten, then sum) so that the float sums agree exactly.
    foreground = (mask_logits > 0).to(mask_logits.dtype).flatten(1)
    mask_score = (mask_logits.sigmoid().flatten(1) * foreground).sum(1) / (foreground.sum(1) + MASK_SCORE_EPS)
    return seg_logits.reshape(num_queries).sigmoid() * mask_score


def top1(mask_logits: torch.Tensor, scores: torch.Tensor) -> TopMask:
    """The highest-scoring query (ties: the lowest index), its binary mask and score.

    Args:
        mask_logits: full-resolution mask logits, (queries, H, W).
        scores: ``score_queries`` output, (queries,).
    """
    if mask_logits.ndim != 3 or scores.shape != mask_logits.shape[:1]:
        raise ValueError(
            f"need mask_logits (queries, H, W) and scores (queries,), got {tuple(mask_logits.shape)} "
            f"and {tuple(scores.shape)}"
        )
    # argmax returns the first maximal index.
    query = int(torch.argmax(scores))
    return TopMask(query=query, score=float(scores[query]), mask=mask_logits[query] > 0, scored=len(scores))


def best_query(
    pred_masks: torch.Tensor,
    seg_logits: torch.Tensor,
    canvas: int,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
) -> TopMask:
    """``top1`` of ``score_queries`` over all queries at the original size, computing only those that can win.

    A query's score is ``sigmoid(SEG)`` times a mask score that is at most 1 (a float sum of n values in [0, 1]
    rounds to at most n), so it never exceeds ``sigmoid(SEG)``. Queries are brought to full resolution in
    order of decreasing ``sigmoid(SEG)``, ``QUERY_CHUNK`` at a time, until the best score so far is above every
    remaining ``sigmoid(SEG)``; a query that is skipped could neither win nor tie. The result is ``top1`` over
    all queries but for rounding: CPU bilinear interpolation rounds a plane's last bit differently with the
    number of planes in the call, so a score can differ by an ulp (1e-7 relative) from the all-at-once call,
    and so can which of several identical queries wins.

    Args:
        pred_masks: decoder mask logits of one image, (queries, h, w); seg_logits: (queries,) or (queries, 1).
        canvas, resized_hw, original_hw: as ``upsample_to_original``.
    """
    num_queries = pred_masks.shape[0]
    if seg_logits.shape not in ((num_queries,), (num_queries, 1)):
        raise ValueError(f"seg_logits must be ({num_queries},) or ({num_queries}, 1), got {tuple(seg_logits.shape)}")
    seg_logits = seg_logits.reshape(num_queries)
    bound = seg_logits.sigmoid()  # the same numbers score_queries multiplies by
    order = torch.argsort(bound, descending=True, stable=True).tolist()
    best: TopMask | None = None
    plane = None  # the winner's logits, for its quality signals
    scored = 0
    for start in range(0, num_queries, QUERY_CHUNK):
        if best is not None and bound[order[start]] < best.score:
            break
        scored = min(start + QUERY_CHUNK, num_queries)
        chunk = torch.tensor(order[start : start + QUERY_CHUNK], device=pred_masks.device)
        logits = upsample_to_original(pred_masks.index_select(0, chunk), canvas, resized_hw, original_hw)
        scores = score_queries(logits, seg_logits.index_select(0, chunk)).tolist()
        for i, (query, score) in enumerate(zip(chunk.tolist(), scores, strict=True)):
            # The highest score; ties go to the lowest query index, as argmax over all queries does.
            if best is None or score > best.score or (score == best.score and query < best.query):
                best, plane = TopMask(query=query, score=score, mask=logits[i] > 0), logits[i]
    return dataclasses.replace(best, scored=scored, quality=mask_quality(plane, seg_logits[best.query]))
