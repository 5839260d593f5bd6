"""Plain per-frame loop implementations in float64: the obviously-correct versions the batched code must match.

Each follows pruning.md §1.3 step by step, with Python loops over tokens and direct differences.
"""

import math

import numpy as np


def coords(grid, normalised=True):
    """(row, col) of every token, divided by (h-1, w-1) when normalised (0 on an axis of size 1)."""
    h, w = grid
    sr = (1.0 / (h - 1) if h > 1 else 0.0) if normalised else 1.0
    sc = (1.0 / (w - 1) if w > 1 else 0.0) if normalised else 1.0
    return np.array([[(i // w) * sr, (i % w) * sc] for i in range(h * w)])


def normalise(v, center=True):
    v = np.asarray(v, dtype=np.float64)
    c = v - v.mean(axis=0) if center else v.copy()
    for i in range(len(c)):
        c[i] = c[i] / max(math.sqrt(float(c[i] @ c[i])), 1e-12)
    return c


def adaptive_lambda(x, grid, alpha=1.0):
    p = coords(grid)
    t_x = float(((x - x.mean(0)) ** 2).sum(1).mean())
    t_p = float(((p - p.mean(0)) ** 2).sum(1).mean())
    if t_p == 0:
        return 0.0
    if t_x == 0:
        return alpha
    return alpha * math.sqrt(t_x / t_p)


def distances(e):
    n = len(e)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            diff = e[i] - e[j]
            d[i, j] = math.sqrt(float(diff @ diff))
    return d


def first_center(e, d, rule, grid):
    n = len(e)
    if rule == "most_isolated":
        best, start = -1.0, 0
        for i in range(n):
            nearest = min((d[i, j] for j in range(n) if j != i), default=0.0)
            if nearest > best:
                best, start = nearest, i
        return start
    if rule == "farthest_from_mean":
        mean = e.mean(0)
        return max(range(n), key=lambda i: (float(np.linalg.norm(e[i] - mean)), -i))
    if rule == "grid_center":
        h, w = grid
        return ((h - 1) // 2) * w + (w - 1) // 2
    return 0


def farthest_first(d, k, start):
    picked = [start]
    while len(picked) < k:
        best, pick = -1.0, None
        for i in range(len(d)):
            if i in picked:
                continue
            nearest = min(d[i, j] for j in picked)
            if nearest > best:
                best, pick = nearest, i
        picked.append(pick)
    return sorted(picked)


def augmented(v, grid, alpha=1.0, lam=None):
    """e_i = [x_i ; λ p_i] and the λ used."""
    x = normalise(v)
    lam = adaptive_lambda(x, grid, alpha) if lam is None else lam
    return np.concatenate([x, lam * coords(grid)], axis=1), lam


def evtp(v, grid, k, alpha=1.0, lam=None, first="most_isolated"):
    e, lam = augmented(v, grid, alpha, lam)
    d = distances(e)
    return farthest_first(d, k, first_center(e, d, first, grid)), lam


def divprune(v, grid, k):
    x = normalise(v, center=False)
    n = len(x)
    d = np.array([[1.0 - float(x[i] @ x[j]) for j in range(n)] for i in range(n)])
    return farthest_first(d, k, first_center(x, d, "most_isolated", grid))


def top_k(scores, k):
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def radius(d, kept):
    return max(min(d[i, j] for j in kept) for i in range(len(d)))


def feature_radius(v, kept):
    return radius(distances(normalise(v)), kept)


def grid_radius(grid, kept):
    return radius(distances(coords(grid, normalised=False)), kept)


def visionzip(features, scores, keys, k, contextual=10 / 64):
    """VisionZip step by step (dvlab-research/VisionZip visionzip/clip_encoder.py, no [CLS]).

    Returns the kept indices ascending and their features (the contextual targets merged), both in float64.
    """
    features, keys = np.asarray(features, dtype=np.float64), np.asarray(keys, dtype=np.float64)
    n = len(scores)
    if k == n:
        return list(range(n)), features
    c = round(k * contextual)
    dominant = top_k(scores, k - c)
    rest = [i for i in range(n) if i not in dominant]
    targets = [rest[j] for j in range(0, len(rest), max(1, len(rest) // c))][:c] if c else []
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    members = {t: [] for t in targets}
    for i in rest if targets else []:
        if i in members:
            continue
        similarity = [float(unit[i] @ unit[t]) for t in targets]
        members[targets[similarity.index(max(similarity))]].append(i)
    rows = {i: features[i] for i in dominant}
    for t, group in members.items():
        rows[t] = features[t] + (np.mean([features[i] for i in group], axis=0) if group else 0.0)
    kept = sorted(rows)
    return kept, np.stack([rows[i] for i in kept])
