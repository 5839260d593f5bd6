"""gIoU and cIoU of referring / reasoning image segmentation, as LISA computes them, and HyperSeg's variant.

Source: dvlab-research/LISA train_ds.py ``validate``, utils/utils.py ``intersectionAndUnionGPU`` and
``AverageMeter``; metrics.md §4. Per (prediction, ground truth) pair, with ignore label 255:

- valid = (G != 255); Pf = (P = 1) and valid; Gf = (G = 1); I = |Pf and Gf|; U = |Pf| + |Gf| - I.
  (``histc`` over [0, 1] counts only the values 0 and 1, so a GT value of 2 from overlapping polygons is not target,
  yet a predicted pixel there still counts in the union.)
- per-pair IoU: 1 if U = 0 (empty target and empty prediction), else I / (U + 1e-5);
- gIoU = sum of per-pair IoUs / (pairs + 1e-5); cIoU = sum of I / (sum of U + 1e-10).

HyperSeg (congvvc/HyperSeg eval/eval_refcoco.py, eval/eval_ReasonSeg.py; metrics.md §4.5) uses the same formulas but
wraps the ground truth in detectron2 ``BitMasks``, which casts it to bool: the ReasonSeg "ignore" pixels (255) become
target. ``variant="hyperseg"`` reproduces that. (How many pairs there are, one per sentence in LISA and one per
referring expression in HyperSeg's RefCOCO, is decided by the data layer, not here.)

LISA accumulates in float32, per dataloader item (an image with all its sentences), and under multi-GPU evaluation
its ``DistributedSampler`` repeats the first items to fill the last batch. ``summarize_refer`` computes in float64 by
default (about 1e-6 relative from the float32 result; metrics.md §4.3) and can emulate the float32 accumulation, item
grouping and world-size padding.
"""

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

# LISA validate: intersectionAndUnionGPU(..., 2, ignore_index=255).
IGNORE_INDEX = 255
VARIANTS = ("lisa", "hyperseg")
PRECISIONS = ("float64", "float32")
# LISA: `intersection_i / (union_i + 1e-5)`, `sum / (count + 1e-5)`, `sum(I) / (sum(U) + 1e-10)`.
PAIR_EPS = 1e-5
COUNT_EPS = 1e-5
CIOU_EPS = 1e-10


@dataclass(frozen=True)
class PairScore:
    """The foreground counts of one (prediction, ground truth) pair: the metrics row of an image expression.

    Attributes:
        intersection: |Pf and Gf| (ignored pixels excluded).
        union: |Pf| + |Gf| - I.
    """

    intersection: int
    union: int

    @property
    def iou(self) -> float:
        """The pair's contribution to gIoU: 1.0 for an empty union, else I / (U + 1e-5)."""
        if self.union == 0:
            return 1.0
        return self.intersection / (self.union + PAIR_EPS)

    @classmethod
    def from_row(cls, row: Mapping) -> "PairScore":
        """Rebuild from a table row holding ``intersection`` and ``union``."""
        return cls(**{field.name: int(row[field.name]) for field in fields(cls)})


def score_pair(
    prediction: np.ndarray, target: np.ndarray, *, variant: str = "lisa", ignore_index: int = IGNORE_INDEX
) -> PairScore:
    """Foreground intersection and union of one pair (LISA ``intersectionAndUnionGPU(..., 2, 255)``, index 1).

    Args:
        prediction: ``(H, W)`` predicted mask; non-zero is foreground (LISA's is ``(logits > 0).int()``, 0/1).
        target: ``(H, W)`` integer ground truth: 1 target, 0 background, ``ignore_index`` ignored; other values
            (2 where LISA's summed polygons overlap) are neither target nor ignored.
        variant: ``"lisa"``, or ``"hyperseg"`` to cast the ground truth to bool first (every non-zero pixel,
            ignore included, becomes target; nothing is ignored).
        ignore_index: the ignore label (255).

    Returns:
        ``PairScore`` of Python ints.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} shapes differ")
    if variant == "hyperseg":
        # detectron2 BitMasks: torch.as_tensor(masks, dtype=torch.bool), then back to uint8 0/1.
        target = (target != 0).astype(np.uint8)
    valid = target != ignore_index
    predicted = (prediction != 0) & valid
    wanted = target == 1
    intersection = int(np.count_nonzero(predicted & wanted))
    union = int(np.count_nonzero(predicted)) + int(np.count_nonzero(wanted)) - intersection
    return PairScore(intersection, union)


@dataclass(frozen=True)
class ReferSummary:
    """Dataset numbers (fractions, not percent).

    Attributes:
        giou: mean per-pair IoU, sum / (pairs + 1e-5).
        ciou: sum of intersections / (sum of unions + 1e-10).
        pairs: pairs counted (including any padding repeats).
    """

    giou: float
    ciou: float
    pairs: int


def _items(pairs: Sequence[PairScore], items: Sequence[Hashable] | None) -> list[list[PairScore]]:
    """Group consecutive pairs with the same item key (LISA scores all sentences of one image together)."""
    if items is None:
        return [[p] for p in pairs]
    if len(items) != len(pairs):
        raise ValueError(f"{len(pairs)} pairs but {len(items)} item keys")
    groups: list[list[PairScore]] = []
    for i, pair in enumerate(pairs):
        if i > 0 and items[i] == items[i - 1]:
            groups[-1].append(pair)
        else:
            groups.append([pair])
    return groups


def _rank_items(groups: list[list[PairScore]], world_size: int) -> list[list[list[PairScore]]]:
    """torch DistributedSampler(shuffle=False, drop_last=False): pad by repeating from the start, then stride."""
    total = math.ceil(len(groups) / world_size) * world_size
    padding = total - len(groups)
    indices = list(range(len(groups)))
    indices += (indices * math.ceil(padding / len(indices)))[:padding]
    return [[groups[i] for i in indices[rank:total:world_size]] for rank in range(world_size)]


def _accumulate(items: list[list[PairScore]], dtype: type) -> tuple[np.floating, np.floating, np.floating, int]:
    """One rank's meters (LISA ``validate``): summed I, summed U, summed gIoU and the pair count, in ``dtype``."""
    sum_i = sum_u = sum_g = dtype(0)
    count = 0
    one, pair_eps = dtype(1.0), dtype(PAIR_EPS)
    for item in items:
        inter = union = acc = dtype(0)
        for pair in item:
            i, u = dtype(pair.intersection), dtype(pair.union)
            inter, union = inter + i, union + u
            acc = acc + i / (u + pair_eps)
            if pair.union == 0:
                acc = acc + one  # `acc_iou[union_i == 0] += 1.0  # no-object target`
        n = len(item)
        # acc_iou / n, then AverageMeter.update(acc_iou, n=n) adds (acc_iou / n) * n.
        sum_i, sum_u, sum_g = sum_i + inter, sum_u + union, sum_g + (acc / dtype(n)) * dtype(n)
        count += n
    return sum_i, sum_u, sum_g, count


def summarize_refer(
    pairs: Sequence[PairScore],
    *,
    items: Sequence[Hashable] | None = None,
    precision: str = "float64",
    world_size: int = 1,
) -> ReferSummary:
    """gIoU and cIoU over a split (LISA ``validate`` after ``all_reduce``).

    Args:
        pairs: every (prediction, ground truth) pair's ``PairScore``, in dataloader order.
        items: optional item key per pair (e.g. the image's sample key); consecutive equal keys form one dataloader
            item, as LISA's RefCOCO loader yields all sentences of an image at once. None: one pair per item
            (ReasonSeg).
        precision: ``"float64"`` (default), or ``"float32"`` to emulate LISA's float32 tensors step by step.
        world_size: GPUs of the emulated run: items are padded and split as ``DistributedSampler`` does, each rank
            accumulates its own meters, and the ranks are summed in rank order (the order of NCCL's reduction is not
            known, so above 2 ranks the float32 result may differ in its last bit).

    Returns:
        ``ReferSummary``.
    """
    if not pairs:
        raise ValueError("no pairs to summarize")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    dtype = np.float32 if precision == "float32" else np.float64
    ranks = [_accumulate(rank, dtype) for rank in _rank_items(_items(pairs, items), world_size)]
    sum_i = sum_u = sum_g = dtype(0)
    count = 0
    for i, u, g, n in ranks:
        sum_i, sum_u, sum_g, count = sum_i + i, sum_u + u, sum_g + g, count + n
    # AverageMeter.all_reduce: avg = sum / (count + 1e-5), count passed through float32 when emulating.
    count_value = float(dtype(count))
    giou = sum_g / dtype(count_value + COUNT_EPS)
    ciou = sum_i / (sum_u + dtype(CIOU_EPS))
    return ReferSummary(float(giou), float(ciou), count)


__all__ = [
    "IGNORE_INDEX",
    "PRECISIONS",
    "VARIANTS",
    "PairScore",
    "ReferSummary",
    "score_pair",
    "summarize_refer",
]
