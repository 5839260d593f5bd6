"""The training loss of a HyperSeg-shaped model: training.md §2's referring loss, plus instance, choice and grounding
terms.

PSALM's criterion (zamling/PSALM, ``psalm/model/mask_decoder/mask_criterion/pretrain_criterion.py``), the public
stand-in for HyperSeg's, which ships none:

- matching: the queries against the target by ``5 x BCE + 5 x dice`` (the class cost is 0 for referring
  segmentation), which with one target is the query of least mask cost;
- mask: sigmoid BCE plus dice (+1 smoothing) on the matched query, weights 5 and 5;
- ``[SEG]``: ``BCEWithLogitsLoss`` over all queries' SEG logits, target 1 at the matched query, ``pos_weight``
  (Q - 1) / 1, weight 2;
- deep supervision: every decoder prediction (before the first layer, after each layer) is matched and weighted
  the same.

HyperSeg and PSALM train the same queries on generic instance segmentation (COCO) beside referring segmentation,
with Mask2Former's set matching over every instance, which is what teaches the queries to cut an image into
objects. Our world has every object's mask, so the instance term does the same on each expression's decoder
output: every object of the scene is matched to a query by Hungarian matching on the same mask cost, and each
matched query gets the BCE + dice of its object (weight ``instance_weight`` on the mean over objects). An
expression that names one object then takes that object's query as its ``[SEG]`` positive, so the two terms agree;
one naming several (their union is one target mask) is matched on its own as above. The matching and this rule
hold at any weight; at weight 0 (the recipe's: words were bound to objects better without the term in 500-step
runs) the term itself is skipped.

The choice term is also ours. Trained from scratch with the terms above, the model learns which queries are
objects long before which object the words name: the ``[SEG]`` BCE is dominated by the easy negatives (the ~95
queries that paint nothing), and a text-independent "objectness" satisfies it (measured on a 3,600-step run: the
SEG logits of different expressions on one image correlated at 0.997). The choice term is a softmax
cross-entropy over the SEG logits of the instance-matched queries only (one per object), target the named
object, for expressions naming one object. A softmax over the scene's objects ignores whatever the logits share
across objects, so its whole gradient is the part the words must decide (in the spirit of MDETR's contrastive
alignment, Kamath et al. 2021, §2.2).

The grounding term is ours too. With the terms above the LLM needs no image at all: the decoder's queries
cross-attend to the Swin pixels and find "the red circle" from the words' embedding alone (measured on a
3,200-step run: keeping 1 of 729 visual tokens and zeroing the FVP tokens left held-out gIoU unchanged, 0.293
against 0.285). Then token pruning cannot matter, the FVP state carries nothing, and places and relations, which
need the words read against the image, stay below chance. The term asks the ``[SEG]`` token's last hidden state
to point at its target among the visual tokens: a softmax over its scaled dot products with the LLM's states at
the kept visual tokens, against the share of each token's patch the target covers (a soft cross-entropy, as in
the reverse of MDETR's soft token prediction, which asks each object query for a distribution over the words
that name it; Kamath et al. 2021, §2.2).

Where PSALM samples 12,544 points by uncertainty to save GPU memory, here the mask terms cover every pixel of the
image's extent on the padded canvas (training.md §5), with the logits upsampled there bilinearly as
post-processing does; matching compares every query at the decoder's own resolution.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..metrics.assignment import linear_sum_assignment
from ..model.parts.mask_decoder import MaskDecoderOutput
from ..model.parts.postprocess import score_queries

# maskformer2_R50_bs16_50ep.yaml, the same file in PSALM and HyperSeg.
WEIGHTS = {"seg": 2.0, "bce": 5.0, "dice": 5.0}


@dataclass
class Targets:
    """Ground truth of a batch of expressions on the padded canvas.

    Attributes:
        masks: ``(E, C, C)`` float in [0, 1], each target resized to its image's extent and padded with zeros.
        valid: ``(E, C, C)`` bool, the image's extent (the loss ignores the padding).
        objects: per expression, ``(O, C, C)`` every object of its scene (for the instance term), or None.
        named: per expression, the indices into its ``objects`` of the objects it names (its target's parts).
    """

    masks: torch.Tensor
    valid: torch.Tensor
    objects: list[torch.Tensor] | None = None
    named: list[tuple[int, ...]] | None = None


def _on_canvas(mask: torch.Tensor, hw: tuple[int, int], canvas: int) -> torch.Tensor:
    """``(N, H, W)`` masks resized to the image's extent ``hw`` on the canvas (area-weighted), zero-padded."""
    out = torch.zeros(mask.shape[0], canvas, canvas)
    resized = F.interpolate(mask[:, None].float(), size=hw, mode="bilinear", antialias=True)[:, 0]
    out[:, : hw[0], : hw[1]] = resized.clamp(0, 1)
    return out


def canvas_targets(
    masks: list[torch.Tensor],
    resized_hw: list[tuple[int, int]],
    canvas: int,
    objects: list[torch.Tensor] | None = None,
    named: list[tuple[int, ...]] | None = None,
) -> Targets:
    """Targets of original-size bool masks ``(H_e, W_e)``, each resized like its image's Swin view; ``objects``
    (per expression, ``(O, H_e, W_e)``; one tensor may serve every expression of an image) likewise."""
    out = torch.cat([_on_canvas(m[None], hw, canvas) for m, hw in zip(masks, resized_hw, strict=True)])
    valid = torch.zeros(len(masks), canvas, canvas, dtype=torch.bool)
    for e, (h, w) in enumerate(resized_hw):
        valid[e, :h, :w] = True
    on_canvas = None
    if objects is not None:
        cache: dict[int, torch.Tensor] = {}
        on_canvas = []
        for o, hw in zip(objects, resized_hw, strict=True):
            if id(o) not in cache:
                cache[id(o)] = _on_canvas(o, hw, canvas)
            on_canvas.append(cache[id(o)])
    return Targets(out, valid, on_canvas, named)


def _dice(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` over the last dim (PSALM's ``dice_loss``)."""
    return 1 - (2 * (probabilities * targets).sum(-1) + 1) / (probabilities.sum(-1) + targets.sum(-1) + 1)


def _cost(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(Q, T)`` matching cost of ``(Q, P)`` logits against ``(T, P)`` soft targets over ``(P,)`` valid weights."""
    p = logits.sigmoid() * valid
    t = targets * valid
    # Pairwise BCE, expanded: -(t log s + (1 - t) log(1 - s)) with log s = -softplus(-x), log(1 - s) = -softplus(x).
    positive, negative = F.softplus(-logits) * valid, F.softplus(logits) * valid
    bce = (positive @ t.T + negative @ (valid - t).T) / valid.sum().clamp(min=1)
    dice = 1 - (2 * p @ t.T + 1) / (p.sum(-1)[:, None] + t.sum(-1)[None, :] + 1)
    return WEIGHTS["bce"] * bce + WEIGHTS["dice"] * dice


def _small(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, C)`` -> ``(N, h*w)`` area-averaged to the logits' resolution."""
    return F.interpolate(masks[:, None].float(), size=size, mode="area")[:, 0].flatten(1)


@torch.no_grad()
def match(pred_masks: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, list[tuple[np.ndarray, np.ndarray]]]:
    """The ``[SEG]`` positive query of each expression, and per expression the (queries, objects) of the instance
    matching (empty without ``targets.objects``)."""
    size = tuple(pred_masks.shape[-2:])
    small, valid = _small(targets.masks, size), _small(targets.valid, size)
    logits = pred_masks.flatten(2).float()  # (E, Q, P)
    positives, pairs = [], []
    for e in range(len(logits)):
        own = _cost(logits[e], small[e : e + 1], valid[e])[:, 0]
        positive = int(own.argmin())
        rows = cols = np.zeros(0, dtype=np.int64)
        if targets.objects is not None:
            cost = _cost(logits[e], _small(targets.objects[e], size), valid[e])
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            if len(targets.named[e]) == 1:  # one object named: its instance query is the [SEG] positive
                positive = int(rows[list(cols).index(targets.named[e][0])])
        positives.append(positive)
        pairs.append((rows, cols))
    return torch.tensor(positives, device=pred_masks.device), pairs


def _upsampled(masks: torch.Tensor, canvas: int) -> torch.Tensor:
    """``(N, h, w)`` logits on the canvas (bilinear, as post-processing)."""
    return F.interpolate(masks[:, None].float(), size=(canvas, canvas), mode="bilinear", align_corners=False)[:, 0]


def _mask_terms(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, BCE (mean over valid pixels) and dice, of ``(N, P)`` logits against ``(N, P)`` targets."""
    bce = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * valid).sum(1) / valid.sum(1)
    return bce, _dice(logits.sigmoid() * valid, targets * valid)


def prediction_loss(
    pred_masks: torch.Tensor, seg_logits: torch.Tensor, targets: Targets, instance: bool = False, choice: bool = False
) -> dict[str, torch.Tensor]:
    """The terms of one decoder prediction, each a mean over expressions (``instance``, ``choice``: add those
    terms, which need ``targets.objects``)."""
    queries, pairs = match(pred_masks, targets)
    canvas = targets.masks.shape[-1]
    e = torch.arange(len(queries))
    valid = targets.valid.flatten(1).float()
    logits = _upsampled(pred_masks[e, queries], canvas).flatten(1)
    bce, dice = _mask_terms(logits, targets.masks.flatten(1), valid)
    seg = seg_logits.reshape(len(queries), -1).float()
    one_hot = F.one_hot(queries, seg.shape[1]).float()
    pos_weight = torch.tensor(seg.shape[1] - 1.0, device=seg.device)
    seg_loss = F.binary_cross_entropy_with_logits(seg, one_hot, pos_weight=pos_weight, reduction="none").mean(1)
    terms = {"seg": seg_loss.mean(), "bce": bce.mean(), "dice": dice.mean()}
    if instance and targets.objects is not None:
        per_expression = []
        for i, (rows, cols) in enumerate(pairs):
            up = _upsampled(pred_masks[i, torch.from_numpy(rows)], canvas).flatten(1)
            o_bce, o_dice = _mask_terms(up, targets.objects[i][torch.from_numpy(cols)].flatten(1), valid[i : i + 1])
            per_expression.append((WEIGHTS["bce"] * o_bce + WEIGHTS["dice"] * o_dice).mean())
        terms["instance"] = torch.stack(per_expression).mean()
    if choice and targets.objects is not None:
        choices = [
            F.cross_entropy(
                seg[i, torch.from_numpy(rows)],
                torch.tensor(list(cols).index(targets.named[i][0]), device=seg.device),
            )
            for i, (rows, cols) in enumerate(pairs)
            if len(targets.named[i]) == 1 and len(rows) > 1
        ]
        terms["choice"] = torch.stack(choices).mean() if choices else seg.sum() * 0.0
    return terms


def token_cover(mask: torch.Tensor, grid: tuple[int, int], kept: torch.Tensor) -> torch.Tensor:
    """``(K,)`` the share of each kept visual token's patch that ``mask`` covers.

    Args:
        mask: ``(H, W)`` bool target in the original image; SigLIP sees the image squash-resized to its grid, so a
            token's patch is the matching cell of an even ``grid`` division of the image.
        grid: ``(h, w)`` SigLIP's token grid.
        kept: ``(K,)`` raster indices of the kept tokens, in sequence order.
    """
    cover = F.adaptive_avg_pool2d(mask[None, None].float(), grid).flatten()
    return cover.index_select(0, kept.to(cover.device))


def grounding_loss(seg: torch.Tensor, image: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Mean over expressions of ``-sum_k p_k log softmax_k(image_k . seg / sqrt(D))``, ``p = cover / sum(cover)``.

    Args:
        seg: ``(E, D)`` each expression's ``[SEG]`` last hidden state.
        image: ``(E, K, D)`` the LLM's last hidden states at its frame's kept visual tokens.
        cover: ``(E, K)`` ``token_cover`` of its target; expressions whose target no kept token covers are left out.
    """
    logits = torch.einsum("ekd,ed->ek", image.float(), seg.float()) / seg.shape[-1] ** 0.5
    cover = cover.to(logits.device)  # built from the CPU masks; the states may be on CUDA
    total = cover.sum(1)
    keep = total > 0
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], cover[keep] / total[keep, None])  # class-probability targets


def criterion(
    output: MaskDecoderOutput, targets: Targets, instance_weight: float = 0.0, choice_weight: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over every decoder prediction (deep supervision), and the unweighted terms of the last one."""
    weights = {**WEIGHTS, "instance": instance_weight, "choice": choice_weight}
    predictions = [(a.pred_masks, a.pred_seg_logits) for a in output.aux_outputs]
    predictions.append((output.pred_masks, output.pred_seg_logits))
    total = torch.zeros((), device=output.pred_masks.device)
    terms = {}
    for masks, seg in predictions:
        terms = prediction_loss(masks, seg, targets, instance=instance_weight > 0, choice=choice_weight > 0)
        total = total + sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def top1_iou(output: MaskDecoderOutput, targets: Targets) -> torch.Tensor:
    """``(E, 2)``: per target, the IoU on the canvas of the mask inference would pick (highest released score) and
    of the best of all queries. Their gap is what the words fail to choose; the second is what the masks allow."""
    canvas = targets.masks.shape[-1]
    ious = []
    for e in range(output.pred_masks.shape[0]):
        logits = _upsampled(output.pred_masks[e], canvas)
        valid = targets.valid[e]
        scores = score_queries(logits * valid, output.pred_seg_logits[e].float())
        predicted = (logits > 0) & valid  # (Q, C, C)
        truth = (targets.masks[e] > 0.5) & valid
        intersection = (predicted & truth).flatten(1).sum(1)
        union = (predicted | truth).flatten(1).sum(1)
        per_query = torch.where(union > 0, intersection / union.clamp(min=1), torch.ones(()))
        ious.append(torch.stack([per_query[int(scores.argmax())], per_query.max()]))
    return torch.stack(ious)
