"""``--dry-run``: what a run will cost, from the manifest alone, before renting GPUs.

No Ray, no model: the plan (``run.plan``: the manifest and one listing of the ``_done/`` markers) gives the shards,
samples, frames and expressions done and pending; ``benchmarks/results/flops.json`` (``benchmarks/flops.py``:
forward FLOPs of one expression on one frame per stage, at the released sizes, per family and keep) gives the
cost of a frame and of an expression on it. Per frame: SigLIP, selection, projector, Swin and the pixel decoder;
per expression on a frame: the rest (HyperSeg's FVP, LLM and decoder; InstructSeg's OVP, LLM, VMTF and decoder),
the LLM as one whole-sequence prefill (the shared visual prefix not discounted: an upper bound). GPU-hours are
FLOPs over an assumed sustained throughput (``--gpu-tflops``).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from .run import plan

FLOPS_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "flops.json"
# Sustained throughput assumed per GPU: about a third of an A100's 312 TFLOP/s dense bf16 peak. An assumption
# (no GPU here to measure one), stated wherever it is used and overridable (--gpu-tflops).
GPU_TFLOPS = 100.0
PER_FRAME = ("siglip", "selection", "projector", "swin", "pixel_decoder")
COUNTS = ("samples", "frames", "expressions", "expression_frames")


@dataclass
class Estimate:
    """Counts done and pending, and the pending work's FLOPs and GPU-hours (None where unknown)."""

    shards: tuple[int, int]  # (done, pending)
    counts: dict[str, tuple[int | None, int | None]]  # name -> (done, pending); None where the manifest lacks it
    family: str
    case: str
    keep: float
    k: int
    frame_tflops: float | None
    expression_tflops: float | None
    pending_pflops: float | None
    gpu_hours: float | None
    gpu_tflops: float


def family(config: RunConfig) -> str:
    """``HyperSeg`` or ``InstructSeg``, from the preset or the checkpoint's config (no weights read)."""
    from ..model.config import config_from_checkpoint, preset
    from ..model.instructseg.predictor import InstructSegPredictor
    from ..model.load import predictor_class

    m = config.model
    cls = predictor_class(preset(m.preset) if m.preset else config_from_checkpoint(m.checkpoint))
    return "InstructSeg" if issubclass(cls, InstructSegPredictor) else "HyperSeg"


def per_unit_tflops(table: dict, keep: float, method: str) -> tuple[int, float, float]:
    """(k, TFLOPs per frame, TFLOPs per expression on a frame) at ``keep``: a row of the table, or linear in k
    between the two rows around it. ``none`` is keep 1; ``fastv`` is the rows' FastV variant."""
    rows = sorted(table["rows"], key=lambda r: r["k"])
    tokens = rows[-1]["k"]  # keep 1: every token
    k = tokens if method == "none" else (round(keep * tokens) if isinstance(keep, float) else int(keep))
    k = max(rows[0]["k"], min(tokens, k))

    def split(row: dict) -> tuple[float, float]:
        stages = row["variants"]["fastv"]["tflops"] if method == "fastv" else row["tflops"]
        frame = sum(v for s, v in stages.items() if s in PER_FRAME)
        return frame, sum(v for s, v in stages.items() if s not in PER_FRAME)

    below = max((r for r in rows if r["k"] <= k), key=lambda r: r["k"])
    above = min((r for r in rows if r["k"] >= k), key=lambda r: r["k"])
    if below is above:
        return k, *split(below)
    t = (k - below["k"]) / (above["k"] - below["k"])
    (f0, e0), (f1, e1) = split(below), split(above)
    return k, f0 + t * (f1 - f0), e0 + t * (e1 - e0)


def estimate(config: RunConfig, gpu_tflops: float = GPU_TFLOPS, flops_path: Path = FLOPS_PATH) -> Estimate:
    work = plan(config)
    pending = set(work.pending)
    sums = {name: [0, 0] for name in COUNTS}
    known = {name: True for name in COUNTS}
    for url, entry in work.entries.items():
        side = 1 if url in pending else 0
        for name in COUNTS:
            value = len(entry["keys"]) if name == "samples" and "samples" not in entry else entry.get(name)
            if value is None:
                known[name] = False
            else:
                sums[name][side] += int(value)
    counts = {name: tuple(sums[name]) if known[name] else (None, None) for name in COUNTS}
    name = family(config)
    flops = json.loads(flops_path.read_text()) if flops_path.is_file() else {"tables": []}
    video = known["frames"] and counts["frames"][1] > counts["samples"][1]  # more frames than samples: videos
    case = "video" if name == "InstructSeg" and video else "image"
    tables = [t for t in flops["tables"] if t["meta"]["family"] == name and t["meta"]["case"] == case]
    frame = expression = pflops = hours = None
    keep = config.pruning.keep
    k = 0
    if tables:
        k, frame, expression = per_unit_tflops(tables[0], keep, config.pruning.method)
        if known["frames"] and known["expression_frames"]:
            total = frame * counts["frames"][1] + expression * counts["expression_frames"][1]
            pflops, hours = total / 1000, total / gpu_tflops / 3600
    return Estimate(
        shards=(work.total - len(work.pending), len(work.pending)),
        counts=counts,
        family=name,
        case=case,
        keep=float(keep) if config.pruning.method != "none" else 1.0,
        k=k,
        frame_tflops=frame,
        expression_tflops=expression,
        pending_pflops=pflops,
        gpu_hours=hours,
        gpu_tflops=gpu_tflops,
    )


def report(config: RunConfig, e: Estimate) -> str:
    """The dry run's table."""

    def number(value) -> str:
        return "?" if value is None else f"{value:,}"

    lines = [f"dry run of {config.data.shards} -> {config.output.uri} (nothing was started)"]
    lines.append(f"{'':26}{'done':>14}{'pending':>14}")
    lines.append(f"{'shards':26}{e.shards[0]:>14,}{e.shards[1]:>14,}")
    labels = {"expression_frames": "masks (expr x frame)"}
    for name, (done, pending) in e.counts.items():
        lines.append(f"{labels.get(name, name):26}{number(done):>14}{number(pending):>14}")
    if any(v == (None, None) for v in e.counts.values()):
        lines.append("? the manifest does not count these (written before make_shards recorded them): convert again")
    method = config.pruning.method
    lines.append(f"model: {e.family} at its released size ({e.case} FLOPs), {method} keep {e.keep:g} (k = {e.k})")
    if e.frame_tflops is None:
        lines.append(f"FLOPs: no {e.family} {e.case} table in {FLOPS_PATH} (run benchmarks/flops.py)")
        return "\n".join(lines)
    lines.append(
        f"forward TFLOPs: {e.frame_tflops:.3f} per frame + {e.expression_tflops:.3f} per expression on a frame"
    )
    if e.pending_pflops is not None:
        lines.append(
            f"pending: {_amount(e.pending_pflops)} PFLOPs = {_amount(e.gpu_hours)} GPU-hours at {e.gpu_tflops:g} "
            "TFLOP/s sustained per GPU (an assumption: --gpu-tflops)"
        )
    return "\n".join(lines)


def _amount(value: float) -> str:
    """Three significant figures, with thousands separators above 1,000."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"
