"""The training curve: loss and running IoU per step, and the held-out gIoU, as one PNG (matplotlib, Agg)."""

from pathlib import Path

import numpy as np


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    cumulative = np.cumsum(np.insert(x, 0, 0.0))
    counts = np.minimum(np.arange(1, len(x) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(x) + 1) - counts]) / counts


def plot_curve(progress, path: str | Path) -> Path:
    """Loss (left) and IoU (right: training top-1 and best-query IoU, smoothed; held-out gIoU and cIoU) against the
    step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [h["step"] for h in progress.history]
    window = max(1, len(steps) // 50)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    left.plot(steps, [h["loss"] for h in progress.history], color="0.8", linewidth=0.5, label="per step")
    left.plot(steps, smooth([h["loss"] for h in progress.history], window), color="C0", label=f"mean of {window}")
    left.set(xlabel="step", ylabel="loss (all decoder layers)", title="training loss")
    left.legend()
    right.plot(steps, smooth([h["iou"] for h in progress.history], window), color="C1", label="train top-1 IoU")
    if progress.history and "best_iou" in progress.history[0]:  # runs before it was recorded lack it
        best = smooth([h["best_iou"] for h in progress.history], window)
        right.plot(steps, best, color="C1", linestyle=":", label="train best-query IoU")
    if progress.evals:
        evals = [e["step"] for e in progress.evals]
        right.plot(evals, [e["giou"] for e in progress.evals], "o-", color="C2", label="held-out gIoU")
        right.plot(evals, [e["ciou"] for e in progress.evals], "s--", color="C3", label="held-out cIoU")
    right.set(xlabel="step", ylabel="IoU", title="accuracy", ylim=(0, 1))
    right.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
