"""Percentile-bootstrap intervals for finite-sample accuracy, paired comparisons and rank correlation.

Expressions of one image (or video) are not independent draws, so every function can resample whole *groups*
(clusters: the image or video an expression belongs to) instead of single values, the cluster bootstrap. The
interval is the percentile interval of the statistic over ``rounds`` resamples (Efron & Tibshirani, *An
Introduction to the Bootstrap*, ch. 13); the paired comparison resamples the same groups for both methods, so the
difference keeps their pairing (ch. 15). Seeded: the same numbers on every run.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ROUNDS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class Comparison:
    """``a - b`` on the same items: the difference, its interval and the two-sided bootstrap p-value."""

    difference: Interval
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.difference.low > 0 or self.difference.high < 0


def _group_index(groups: Sequence | None, n: int) -> list[np.ndarray]:
    """Per group, the indices of its items (each item its own group when ``groups`` is None)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} values")
    index: dict = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    return [np.array(v) for v in index.values()]


def _resamples(groups: list[np.ndarray], rounds: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(rounds, len(groups)))
    return [np.concatenate([groups[g] for g in row]) for row in picks]


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def interval(
    data: np.ndarray | Sequence,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    groups: Sequence | None = None,
    rounds: int = ROUNDS,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """``statistic(data)`` with its percentile interval; ``data`` is ``(n,)`` or ``(n, k)`` rows (e.g. I, U)."""
    data = np.asarray(data, dtype=np.float64)
    if len(data) == 0:
        raise ValueError("no values to bootstrap")
    samples = np.array([statistic(data[i]) for i in _resamples(_group_index(groups, len(data)), rounds, seed)])
    return Interval(float(statistic(data)), *_percentiles(samples, level))


def ratio_of_sums(rows: np.ndarray) -> float:
    """``sum(col 0) / sum(col 1)``: cIoU from ``(intersection, union)`` rows."""
    return float(rows[:, 0].sum() / max(rows[:, 1].sum(), 1e-10))


def paired(
    a: np.ndarray | Sequence,
    b: np.ndarray | Sequence,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    groups: Sequence | None = None,
    rounds: int = ROUNDS,
    level: float = LEVEL,
    seed: int = 0,
) -> Comparison:
    """``statistic(a) - statistic(b)`` over the same items, resampled together; p = twice the smaller tail."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have one shape, got {a.shape} and {b.shape}")
    samples = np.array(
        [statistic(a[i]) - statistic(b[i]) for i in _resamples(_group_index(groups, len(a)), rounds, seed)]
    )
    observed = float(statistic(a) - statistic(b))
    p = 2 * min(np.mean(samples <= 0), np.mean(samples >= 0))
    return Comparison(Interval(observed, *_percentiles(samples, level)), float(min(p, 1.0)))


def spearman(rows: np.ndarray) -> float:
    """Spearman's rank correlation of the two columns of ``rows`` (ties at their mean rank); NaN if one is
    constant. pandas' own implementation (``DataFrame.corr``; ``Series.corr`` would need scipy)."""
    return float(pd.DataFrame(rows[:, :2]).corr(method="spearman").iloc[0, 1])
