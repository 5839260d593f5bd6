"""DAVIS 2017 evaluation: per-object J and F over a sequence, and the dataset's J&F, as the official code does it.

Source: davisvideochallenge/davis2017-evaluation (davis2017/davis.py ``DAVIS.get_all_masks``, davis2017/results.py
``Results.read_masks``, davis2017/evaluation.py ``DAVISEvaluation``, davis2017/utils.py ``db_statistics``,
evaluation_method.py); metrics.md §1.3-1.4. ReferFormer scores Ref-DAVIS17 with this code in the unsupervised task,
once per annotator set (metrics.md §3.3).

- Semi-supervised: the first and last frames are dropped, void pixels are *not* used (255 counts as background),
  missing predicted objects are zero-filled, and more predicted than annotated objects is an error.
- Unsupervised: all frames, void pixels applied, at most 20 proposals, and proposals are paired with objects by a
  minimum-cost assignment on -(mean_t J + mean_t F) / 2.
- Per object: M = nanmean, R = nanmean(v > 0.5), D = the decay between the first and last quarter of the frames.
- Dataset: J-Mean is the mean of J.M over all objects of all sequences (pooled), likewise F; J&F = (J + F) / 2.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .assignment import linear_sum_assignment
from .boundary import boundary_f_frames
from .region import region_similarity_frames

# davis2017/evaluation.py: the label of void pixels in the annotation PNGs.
VOID_LABEL = 255
# davis2017/evaluation.py _evaluate_unsupervised(max_n_proposals=20).
MAX_PROPOSALS = 20
TASKS = ("semi-supervised", "unsupervised")


@dataclass(frozen=True)
class Statistics:
    """``db_statistics`` of one object's per-frame values.

    Attributes:
        mean: nanmean of the values (M).
        recall: nanmean of (value > 0.5) (R; a NaN frame counts as a miss).
        decay: mean of the first quarter minus mean of the last quarter (D).
    """

    mean: float
    recall: float
    decay: float


@dataclass(frozen=True)
class ObjectResult:
    """Per-frame J and F of one annotated object (or, unsupervised, of the proposal matched to it).

    Attributes:
        name: ``"{sequence}_{k}"``, k counting from 1, as the official per-sequence CSV names it. In the unsupervised
            task the official rows follow the matched proposals in proposal order, so k is the k-th matched pair, not
            necessarily annotated object k.
        j: ``(T,)`` float64 per-frame J over the scored frames.
        f: ``(T,)`` float64 per-frame F over the scored frames.
    """

    name: str
    j: np.ndarray
    f: np.ndarray


@dataclass(frozen=True)
class DavisSummary:
    """The global numbers of ``evaluation_method.py`` (values in [0, 1]).

    Attributes:
        jf_mean: (J-Mean + F-Mean) / 2.
        j_mean, j_recall, j_decay: means over all objects of the per-object J statistics.
        f_mean, f_recall, f_decay: the same for F.
        per_object: ``{name: (J.M, F.M)}``, the per-sequence CSV.
    """

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    per_object: dict[str, tuple[float, float]]


def frame_statistics(values: np.ndarray) -> Statistics:
    """Mean, recall and decay of per-frame values (davis2017/utils.py ``db_statistics``).

    The decay bins come from ``round(linspace(1, T, 5) + 1e-10) - 1`` cast to uint8 (which wraps past 255 frames),
    and the bin ends are ``ids[i + 1] + 1`` in uint8 arithmetic as NumPy 2 does it (so an end of 255 wraps to 0):
    both are reproduced, so sequences longer than 256 frames get the official (odd) decay.

    Args:
        values: ``(T,)`` per-frame values, NaN allowed.

    Returns:
        ``Statistics``; an empty bin gives a NaN decay, as ``np.nanmean`` of an empty slice does.
    """
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.nanmean(v > 0.5))
        ids = [int(x) % 256 for x in np.round(np.linspace(1, len(v), 5) + 1e-10) - 1]
        first = v[ids[0] : (ids[1] + 1) % 256]
        last = v[ids[3] : (ids[4] + 1) % 256]
        decay = float(np.nanmean(first) - np.nanmean(last))
    return Statistics(mean, recall, decay)


def annotation_objects(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split indexed ground-truth masks into objects (davis2017/davis.py ``get_all_masks(seq, True)``).

    Args:
        annotation: ``(T, H, W)`` integer object ids per frame (the indexed PNGs), 255 = void.

    Returns:
        ``(objects, void)``: ``(N, T, H, W)`` bool, object k = ``annotation == k`` after void is set to 0, with N the
        largest id in frame 0; and ``(T, H, W)`` bool void pixels.
    """
    annotation = np.asarray(annotation)
    if annotation.ndim != 3:
        raise ValueError(f"expected (T, H, W) annotations, got shape {annotation.shape}")
    void = annotation == VOID_LABEL
    masks = np.where(void, 0, annotation)
    num_objects = int(np.max(masks[0]))
    return _split_ids(masks, num_objects), void


def result_objects(result: np.ndarray) -> np.ndarray:
    """Split indexed predicted masks into objects (davis2017/results.py ``Results.read_masks``).

    Args:
        result: ``(T, H, W)`` integer object ids per frame, over the frames that are scored.

    Returns:
        ``(M, T, H, W)`` bool, object k = ``result == k`` for k = 1..max over all frames. A 255 pixel is *not* void
        here: it makes 255 objects, which the evaluation then refuses, as the official code does.
    """
    result = np.asarray(result)
    if result.ndim != 3:
        raise ValueError(f"expected (T, H, W) results, got shape {result.shape}")
    return _split_ids(result, int(np.max(result)))


def _split_ids(masks: np.ndarray, num_objects: int) -> np.ndarray:
    ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1, 1)
    return masks[None] == ids


def _pad_objects(objects: np.ndarray, count: int) -> np.ndarray:
    """Zero-fill missing objects at the end, as both official ``_evaluate_*`` do."""
    missing = count - objects.shape[0]
    if missing <= 0:
        return objects
    return np.concatenate([objects, np.zeros((missing, *objects.shape[1:]), dtype=objects.dtype)], axis=0)


def evaluate_objects(
    gt_objects: np.ndarray, res_objects: np.ndarray, void: np.ndarray | None, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of each annotated object (davis2017/evaluation.py ``_evaluate_semisupervised`` and
    ``_evaluate_unsupervised``).

    Args:
        gt_objects: ``(N, T, H, W)`` bool annotated objects over the scored frames.
        res_objects: ``(M, T, H, W)`` bool predicted objects (or proposals) over the same frames.
        void: ``(T, H, W)`` void mask, used by the unsupervised task only (the semi-supervised one passes None), or
            None.
        task: ``"semi-supervised"`` or ``"unsupervised"``.

    Returns:
        ``(j, f)``, each ``(N, T)`` float64. Semi-supervised: row k is object k. Unsupervised: the rows are the matched
        (proposal, object) pairs in ascending proposal order, as the official code returns them.

    Raises:
        ValueError: for an unknown task, more predicted objects than annotated ones (semi-supervised), or more than
            20 proposals (unsupervised); the official script exits in those cases.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    n_gt, n_res = gt_objects.shape[0], res_objects.shape[0]
    if task == "semi-supervised":
        if n_res > n_gt:
            raise ValueError(f"{n_res} predicted objects but only {n_gt} annotated ones")
        res_objects = _pad_objects(res_objects, n_gt)
        j = np.zeros(gt_objects.shape[:2])
        f = np.zeros(gt_objects.shape[:2])
        for k in range(n_gt):
            j[k] = region_similarity_frames(res_objects[k], gt_objects[k])
            f[k] = boundary_f_frames(res_objects[k], gt_objects[k])
        return j, f
    if n_res > MAX_PROPOSALS:
        raise ValueError(f"{n_res} proposals, more than the {MAX_PROPOSALS} allowed")
    res_objects = _pad_objects(res_objects, n_gt)
    n_res, frames = res_objects.shape[0], gt_objects.shape[1]
    j = np.zeros((n_res, n_gt, frames))
    f = np.zeros((n_res, n_gt, frames))
    for k in range(n_gt):
        for p in range(n_res):
            j[p, k] = region_similarity_frames(res_objects[p], gt_objects[k], void)
            f[p, k] = boundary_f_frames(res_objects[p], gt_objects[k], void)
    scores = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-scores)
    return j[rows, cols, :], f[rows, cols, :]


def evaluate_sequence(name: str, annotation: np.ndarray, result: np.ndarray, task: str) -> list[ObjectResult]:
    """Score one sequence from its indexed masks, as one iteration of ``DAVISEvaluation.evaluate``.

    Args:
        name: the sequence name (used for the per-object names).
        annotation: ``(T, H, W)`` indexed ground truth of every frame (255 = void).
        result: ``(T, H, W)`` indexed prediction of every frame (0 = background, k = object k).
        task: ``"semi-supervised"`` (frames 1..T-2 scored) or ``"unsupervised"`` (all frames).

    Returns:
        One ``ObjectResult`` per annotated object (see ``evaluate_objects`` for the unsupervised order).
    """
    annotation, result = np.asarray(annotation), np.asarray(result)
    if annotation.shape != result.shape:
        raise ValueError(f"annotation {annotation.shape} and result {result.shape} shapes differ")
    gt_objects, void = annotation_objects(annotation)
    if task == "semi-supervised":
        if annotation.shape[0] < 3:
            raise ValueError(f"semi-supervised scoring drops the first and last frame; {name} has {len(annotation)}")
        gt_objects, result, void = gt_objects[:, 1:-1], result[1:-1], None
    j, f = evaluate_objects(gt_objects, result_objects(result), void, task)
    return [ObjectResult(f"{name}_{k + 1}", j[k], f[k]) for k in range(j.shape[0])]


def summarize_davis(objects: Sequence[ObjectResult]) -> DavisSummary:
    """Global J&F, J and F statistics over all objects of all sequences (``evaluation_method.py``).

    Args:
        objects: every ``ObjectResult`` of the evaluated sequences, in sequence order.

    Returns:
        ``DavisSummary``: each statistic is the plain mean over objects (pooled, not per sequence first).
    """
    j_stats = [frame_statistics(o.j) for o in objects]
    f_stats = [frame_statistics(o.f) for o in objects]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        j_mean, f_mean = np.mean([s.mean for s in j_stats]), np.mean([s.mean for s in f_stats])
        summary = DavisSummary(
            jf_mean=float((j_mean + f_mean) / 2.0),
            j_mean=float(j_mean),
            j_recall=float(np.mean([s.recall for s in j_stats])),
            j_decay=float(np.mean([s.decay for s in j_stats])),
            f_mean=float(f_mean),
            f_recall=float(np.mean([s.recall for s in f_stats])),
            f_decay=float(np.mean([s.decay for s in f_stats])),
            per_object={o.name: (js.mean, fs.mean) for o, js, fs in zip(objects, j_stats, f_stats, strict=True)},
        )
    return summary


__all__ = [
    "MAX_PROPOSALS",
    "TASKS",
    "VOID_LABEL",
    "DavisSummary",
    "ObjectResult",
    "Statistics",
    "annotation_objects",
    "evaluate_objects",
    "evaluate_sequence",
    "frame_statistics",
    "result_objects",
    "summarize_davis",
]
