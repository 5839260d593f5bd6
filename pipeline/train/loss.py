"""The training loss of a HyperSeg-shaped model for one target per expression (training.md §2).

PSALM's criterion (zamling/PSALM, ``psalm/model/mask_decoder/mask_criterion/pretrain_criterion.py``), the public
stand-in for HyperSeg's, which ships none:

- matching: the 100 queries against the single target by ``5 x BCE + 5 x dice`` (the class cost is 0 for
  referring segmentation), which with one target is the query of least mask cost;
- mask: sigmoid BCE plus dice (+1 smoothing) on the matched query, weights 5 and 5;
- ``[SEG]``: ``BCEWithLogitsLoss`` over all queries' SEG logits, target 1 at the matched query, ``pos_weight``
  (Q - 1) / 1, weight 2;
- deep supervision: every decoder prediction (before the first layer, after each layer) is matched and weighted
  the same.

Where PSALM samples 12,544 points by uncertainty to save GPU memory, here the mask terms cover every pixel of the
image's extent on the padded canvas (training.md §5), with the matched query's logits upsampled there bilinearly
as post-processing does; matching compares every query at the decoder's own resolution.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..model.mask_decoder import MaskDecoderOutput
from ..model.postprocess import score_queries

# maskformer2_R50_bs16_50ep.yaml, the same file in PSALM and HyperSeg.
WEIGHTS = {"seg": 2.0, "bce": 5.0, "dice": 5.0}


@dataclass
class Targets:
    """Ground truth of a batch of expressions on the padded canvas.

    Attributes:
        masks: ``(E, C, C)`` float in [0, 1], each target resized to its image's extent and padded with zeros.
        valid: ``(E, C, C)`` bool, the image's extent (the loss ignores the padding).
    """

    masks: torch.Tensor
    valid: torch.Tensor


def canvas_targets(masks: list[torch.Tensor], resized_hw: list[tuple[int, int]], canvas: int) -> Targets:
    """Targets of original-size bool masks ``(H_e, W_e)``, each resized like its image's Swin view."""
    out = torch.zeros(len(masks), canvas, canvas)
    valid = torch.zeros(len(masks), canvas, canvas, dtype=torch.bool)
    for e, (mask, (h, w)) in enumerate(zip(masks, resized_hw, strict=True)):
        resized = F.interpolate(mask[None, None].float(), size=(h, w), mode="bilinear", antialias=True)
        out[e, :h, :w] = resized[0, 0].clamp(0, 1)
        valid[e, :h, :w] = True
    return Targets(out, valid)


def _dice(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` over the last dim (PSALM's ``dice_loss``)."""
    return 1 - (2 * (probabilities * targets).sum(-1) + 1) / (probabilities.sum(-1) + targets.sum(-1) + 1)


@torch.no_grad()
def match(pred_masks: torch.Tensor, targets: Targets) -> torch.Tensor:
    """``(E,)`` the query of least ``5 BCE + 5 dice`` against each target, at the logits' resolution."""
    h, w = pred_masks.shape[-2:]
    small = F.interpolate(targets.masks[:, None], size=(h, w), mode="area")[:, 0].flatten(1)  # (E, P)
    valid = F.interpolate(targets.valid[:, None].float(), size=(h, w), mode="area")[:, 0].flatten(1)
    logits = pred_masks.flatten(2).float()  # (E, Q, P)
    t, v = small[:, None], valid[:, None]
    bce = F.binary_cross_entropy_with_logits(logits, t.expand_as(logits), reduction="none")
    bce = (bce * v).sum(-1) / v.sum(-1).clamp(min=1)
    dice = _dice(logits.sigmoid() * v, t * v)
    return (WEIGHTS["bce"] * bce + WEIGHTS["dice"] * dice).argmin(1)


def _upsampled(pred_masks: torch.Tensor, queries: torch.Tensor, canvas: int) -> torch.Tensor:
    """``(E, C, C)`` logits of each expression's chosen query on the canvas (bilinear, as post-processing)."""
    chosen = pred_masks[torch.arange(len(queries)), queries]  # (E, h, w)
    return F.interpolate(chosen[:, None].float(), size=(canvas, canvas), mode="bilinear", align_corners=False)[:, 0]


def prediction_loss(pred_masks: torch.Tensor, seg_logits: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
    """The three terms of one decoder prediction, each a mean over expressions."""
    queries = match(pred_masks, targets)
    canvas = targets.masks.shape[-1]
    logits = _upsampled(pred_masks, queries, canvas).flatten(1)
    t, v = targets.masks.flatten(1), targets.valid.flatten(1).float()
    bce = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * v).sum(1) / v.sum(1)
    dice = _dice(logits.sigmoid() * v, t * v)
    seg = seg_logits.reshape(len(queries), -1).float()
    one_hot = F.one_hot(queries, seg.shape[1]).float()
    pos_weight = torch.tensor(seg.shape[1] - 1.0, device=seg.device)
    seg_loss = F.binary_cross_entropy_with_logits(seg, one_hot, pos_weight=pos_weight, reduction="none").mean(1)
    return {"seg": seg_loss.mean(), "bce": bce.mean(), "dice": dice.mean()}


def criterion(output: MaskDecoderOutput, targets: Targets) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over every decoder prediction (deep supervision), and the unweighted terms of the last one."""
    predictions = [(a.pred_masks, a.pred_seg_logits) for a in output.aux_outputs]
    predictions.append((output.pred_masks, output.pred_seg_logits))
    total = torch.zeros((), device=output.pred_masks.device)
    terms = {}
    for masks, seg in predictions:
        terms = prediction_loss(masks, seg, targets)
        total = total + sum(WEIGHTS[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def top1_iou(output: MaskDecoderOutput, targets: Targets) -> torch.Tensor:
    """``(E,)`` IoU of the mask inference would pick (highest released score) against each target, on the canvas."""
    canvas = targets.masks.shape[-1]
    ious = []
    for e in range(output.pred_masks.shape[0]):
        logits = F.interpolate(output.pred_masks[e][None].float(), size=(canvas, canvas), mode="bilinear")[0]
        valid = targets.valid[e]
        scores = score_queries(logits * valid, output.pred_seg_logits[e].float())
        predicted = (logits[int(scores.argmax())] > 0) & valid
        truth = (targets.masks[e] > 0.5) & valid
        union = (predicted | truth).sum()
        ious.append((predicted & truth).sum() / union if union > 0 else torch.tensor(1.0))
    return torch.stack(ious)
