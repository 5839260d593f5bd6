"""What the shared visual prefix and pruning buy: FLOPs at full size, CPU wall-clock, and Ray against the bare loop.

    python benchmarks/speed.py                              # the report -> results/speed.json (~15 min, 2 cores)
    python benchmarks/speed.py --quick --out /tmp/s.json    # tiny sizes, one round: checks that it runs

All in one run:

1. **FLOPs** per expression and frame (``FlopCounterMode`` on the meta model, as ``benchmarks/flops.py``) at
   ``--flops-preset`` (hyperseg-3b) for each keep ratio, with sharing off and on, on a ReVOS-like load (a video,
   8 expressions) and a RefCOCO-like load (an image, 3 expressions). *Off* is the release: every expression
   runs the whole model on its frame. *On* is ``HyperSegPredictor``: SigLIP, selection, projector, Swin, the
   pixel decoder, the FVP and the LLM prefix (everything before ``<refer>``) once per frame, shared by its E
   expressions; each expression then runs its LLM suffix (instruction, answer, 100 queries) against the
   cached keys and values, and the mask decoder. The phi-2 sequence layout is model.md §1.5's (Inferred).
2. **CPU wall-clock** on ``--wall-preset`` (bench) for the same grid: off is one ``predict`` /
   ``predict_video`` call per expression with ``share_prefix=False``; on is one call for all of them. Per
   stage (the predictor's stage times; ``other`` is the rest: image resizing, prompt assembly), the median of
   ``--rounds`` rounds run interleaved (this machine's speed drifts). The FLOPs of *the sequences timed* (the
   bench model and its tokenizer's lengths, checked against the lengths the predictor reports) give the
   FLOP speed-up the measured one is divided by.
3. **The engine** on the same image shards (``--engine-images`` images of the RefCOCO-like load, 3 prompts,
   bench, keep 0.2, sharing on): the job command ``jobs/pseudo_label.py`` with Ray (one actor; Ray started
   first, as a running cluster would be) against the same command with ``--no-ray``, each in a fresh
   process, rounds alternated.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import transformers
from flops import STAGES as FLOP_STAGES
from flops import fixed_stages, llm_pass, meta_model, selection_stages
from machine import cpu_name
from PIL import Image

from pipeline.model import HyperSegPredictor, PruningConfig, preset
from pipeline.model.hyperseg.predictor import STAGES as TIMED_STAGES
from pipeline.model.parts.prompt import REFER_TOKEN_INDEX, format_instruction, refer_ids

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
KEEPS = (1.0, 0.2, 0.1, 0.05)
# The wall-clock stages: the predictor's (its "selection" includes the projector), then what they leave out.
WALL_STAGES = (*TIMED_STAGES, "other")
# The timed stages FLOPs count: all but post-processing (the timed "selection" holds the projector too).
MODEL_STAGES = tuple(s for s in TIMED_STAGES if s != "postprocess")
EXPRESSIONS = (
    "the dog running on the grass",
    "the person holding a red bag",
    "the car parked on the left",
    "the small bird on the branch",
    "the tallest tree in the back",
    "the woman in the blue dress",
    "the cup next to the laptop",
    "the horse behind the fence",
)
TARGETS = {"flops_speedup": 5.0, "wall_over_flops": 0.8, "ray_over_bare": 0.9}


@dataclass(frozen=True)
class Load:
    """A workload: ``expressions`` asked of each of ``frames`` frames of ``size`` (H, W), in ``task``'s wording."""

    name: str
    task: str
    video: bool
    frames: int
    expressions: int
    size: tuple[int, int]


@dataclass(frozen=True)
class Layout:
    """Token counts of one frame's prompts around the image, FVP and query tokens.

    Attributes:
        before: text ids before ``<refer>`` (system, turn, task wording).
        after: text ids after ``<refer>`` (answer, [SEG], ``<|endoftext|>``).
        refer: per expression, its instruction ids + [SEG].
        temporal, queries: FVP tokens and seg queries.
    """

    before: int
    after: int
    refer: tuple[int, ...]
    temporal: int
    queries: int

    def prefix(self, k: int) -> int:
        """Tokens every expression of a frame shares: all up to ``<refer>``."""
        return self.before + k + self.temporal

    def suffix(self, e: int) -> int:
        return self.refer[e] + self.after + self.queries


# model.md §1.5 (Inferred phi-2 counts, as benchmarks/flops.py): 36 + 1 + ~15 text before <refer>, ~12 + [SEG] +
# <|endoftext|> after; the video wording adds ~7 ids before <refer> and one "\n" after. 14-id instructions.
PHI2_TEXT = {"referring": (52, 14), "video": (59, 15)}
PHI2_REFER = 14


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny presets, small loads, one round (for the tests)")
    parser.add_argument("--flops-preset", default="hyperseg-3b")
    parser.add_argument("--wall-preset", default="bench")
    parser.add_argument("--rounds", type=int, default=3, help="wall-clock rounds (median)")
    parser.add_argument("--engine-images", type=int, default=64)
    parser.add_argument("--engine-rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.flops_preset = args.wall_preset = "tiny"
        args.rounds, args.engine_images, args.engine_rounds = 1, 4, 1
    return args


def loads(quick: bool) -> tuple[Load, ...]:
    if quick:
        return (Load("revos", "video", True, 2, 3, (48, 64)), Load("refcoco", "referring", False, 1, 2, (48, 64)))
    return (Load("revos", "video", True, 2, 8, (480, 854)), Load("refcoco", "referring", False, 1, 3, (480, 640)))


# -- FLOPs ------------------------------------------------------------------------------------------------------


def phi2_layout(config, load: Load) -> Layout:
    before, after = PHI2_TEXT[load.task]
    refer = (PHI2_REFER,) * load.expressions
    return Layout(before, after, refer, config.fvp.num_latents, config.decoder.num_queries)


def predictor_layout(predictor: HyperSegPredictor, load: Load) -> Layout:
    """The layout of the sequences ``predictor`` builds for ``load`` (its tokenizer, its template)."""
    ids = predictor.prompt_ids(load.task)
    refer_at = ids.index(REFER_TOKEN_INDEX)
    texts = EXPRESSIONS[: load.expressions]
    config = predictor.model.config
    return Layout(
        before=refer_at - 2,  # <image> and <temporal> come before <refer>
        after=len(ids) - refer_at - 2,  # <refer> itself and <seg>
        refer=tuple(len(refer_ids(predictor.tokenizer, format_instruction(load.task, t))) for t in texts),
        temporal=config.fvp.num_latents,
        queries=config.decoder.num_queries,
    )


class FlopTable:
    """FLOPs per expression and frame of one model size, for any keep, sharing and layout."""

    def __init__(self, preset_name: str, seed: int = 0):
        self.model = meta_model(preset(preset_name))
        self.fixed, _ = fixed_stages(self.model)  # siglip, swin, pixel_decoder, fvp, decoder
        config = self.model.config
        n = config.vision.grid[0] * config.vision.grid[1]
        generator = torch.Generator().manual_seed(seed)
        self.features = torch.randn(1, n, config.vision.hidden_size, generator=generator)
        self._selection: dict[float, dict] = {}
        self._llm: dict[tuple[int, int], int] = {}

    def llm(self, length: int, past: int = 0) -> int:
        if (length, past) not in self._llm:
            self._llm[(length, past)] = llm_pass(self.model, length, past).flops
        return self._llm[(length, past)]

    def per_expression(self, keep: float, layout: Layout, shared: bool) -> dict:
        """Per stage (``FLOP_STAGES``), the FLOPs of one expression on one frame; the LLM's also split into the
        frame's shared prefix (its share of it) and the expression's own pass."""
        if keep not in self._selection:
            self._selection[keep] = selection_stages(self.model, self.features, keep)
        chosen = self._selection[keep]
        k, e = chosen["k"], len(layout.refer)
        frame = {s: self.fixed[s].flops for s in ("siglip", "swin", "pixel_decoder", "fvp")}
        frame |= {s: chosen[s].flops for s in ("selection", "projector")}
        prefix = layout.prefix(k)
        if shared:
            suffix = statistics.fmean(self.llm(layout.suffix(i), prefix) for i in range(e))
            flops = {s: v / e for s, v in frame.items()}
            llm = {"llm_shared": self.llm(prefix) / e, "llm_own": suffix}
        else:
            flops = dict(frame)
            llm = {
                "llm_shared": 0.0,
                "llm_own": statistics.fmean(self.llm(prefix + layout.suffix(i)) for i in range(e)),
            }
        flops["llm"] = llm["llm_shared"] + llm["llm_own"]
        flops["decoder"] = self.fixed["decoder"].flops
        flops = {s: float(flops[s]) for s in FLOP_STAGES}
        return {"k": k, "flops": flops, "total": sum(flops.values()), **llm}


def flop_rows(table: FlopTable, grid: list[tuple[Load, Layout]]) -> list[dict]:
    rows = []
    for load, layout in grid:
        base = table.per_expression(1.0, layout, shared=False)["total"]
        for keep in KEEPS:
            for shared in (False, True):
                counted = table.per_expression(keep, layout, shared)
                rows.append(
                    {"load": load.name, "keep": keep, "shared": shared, **counted, "speedup": base / counted["total"]}
                )
    return rows


# -- wall-clock -------------------------------------------------------------------------------------------------


def frames_of(load: Load, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((*load.size, 3)) * 255).astype(np.uint8) for _ in range(load.frames)]


def timed(predictor: HyperSegPredictor, load: Load, frames: list[np.ndarray], keep: float, shared: bool) -> dict:
    """One pass of ``load``: seconds per expression and frame, per stage, and the sequence lengths seen."""
    predictor.pruning = PruningConfig("evtp", keep) if keep < 1 else PruningConfig()
    predictor.share_prefix = shared
    texts = list(EXPRESSIONS[: load.expressions])
    calls = [texts] if shared else [[t] for t in texts]  # off: the release, one expression at a time
    seconds, lengths = dict.fromkeys(WALL_STAGES, 0.0), {}
    start = time.perf_counter()
    for call in calls:
        if load.video:
            per_frame = predictor.predict_video(frames, call, task=load.task)
        else:
            per_frame = [predictor.predict(frames[0], call, task=load.task)]
        for results in per_frame:  # one model call per frame: its expressions share one timing dict
            for stage, value in results[0].seconds.items():
                seconds[stage] += value
            for text, result in zip(call, results, strict=True):
                lengths[text] = result.sequence_length
    total = time.perf_counter() - start
    seconds["other"] = total - sum(seconds.values())
    count = load.expressions * load.frames
    return {
        "seconds": {s: v / count for s, v in seconds.items()},
        "total": total / count,
        "k": int(results[0].kept.shape[0]),
        "lengths": [lengths[t] for t in texts],
    }


def wall_rows(predictor: HyperSegPredictor, grid: list[tuple[Load, Layout]], rounds: int) -> list[dict]:
    inputs = {load.name: frames_of(load) for load, _ in grid}
    points = [(load, layout, keep, shared) for load, layout in grid for keep in KEEPS for shared in (False, True)]
    for load, _, keep, shared in points[:: len(KEEPS) * 2]:  # warm up each load once (first-call costs)
        timed(predictor, load, inputs[load.name], keep, shared)
    runs: dict[int, list[dict]] = {i: [] for i in range(len(points))}
    for r in range(rounds):
        for i, (load, _, keep, shared) in enumerate(points):
            runs[i].append(timed(predictor, load, inputs[load.name], keep, shared))
        logging.info("wall-clock round %d/%d done", r + 1, rounds)
    rows = []
    for i, (load, layout, keep, shared) in enumerate(points):
        first = runs[i][0]
        expected = [layout.prefix(first["k"]) + layout.suffix(e) for e in range(load.expressions)]
        if first["lengths"] != expected:  # the FLOPs below would be of other sequences
            raise RuntimeError(f"{load.name}: timed sequence lengths {first['lengths']} != layout's {expected}")
        seconds = {s: statistics.median(run["seconds"][s] for run in runs[i]) for s in WALL_STAGES}
        total = statistics.median(run["total"] for run in runs[i])
        rows.append(
            {"load": load.name, "keep": keep, "shared": shared, "k": first["k"], "seconds": seconds, "total": total}
        )
    return rows


def ratios(wall: list[dict], flops: list[dict]) -> None:
    """Add measured and FLOP speed-ups (against keep 1 unshared of the same load) to the wall rows."""
    counted = {(r["load"], r["keep"], r["shared"]): r for r in flops}
    for row in wall:
        base = next(w for w in wall if w["load"] == row["load"] and w["keep"] == 1.0 and not w["shared"])
        mine, theirs = counted[(row["load"], row["keep"], row["shared"])], counted[(row["load"], 1.0, False)]
        row["speedup"] = base["total"] / row["total"]
        row["flops_speedup"] = theirs["total"] / mine["total"]
        row["wall_over_flops"] = row["speedup"] / row["flops_speedup"]
        # The same on the stages FLOPs count (not post-processing, not "other").
        row["model_speedup"] = sum(base["seconds"][s] for s in MODEL_STAGES) / sum(
            row["seconds"][s] for s in MODEL_STAGES
        )
        row["model_over_flops"] = row["model_speedup"] / row["flops_speedup"]


# -- the engine -------------------------------------------------------------------------------------------------


def engine_rows(preset_name: str, load: Load, images: int, rounds: int, work: Path) -> dict:
    """Expressions per second of the pseudo-labelling job with Ray and as the bare loop, on the same shards.

    Both are the user's command, each in a fresh process (``jobs/pseudo_label.py ... --address`` against a
    Ray started beforehand, as a running cluster; ``... --no-ray``), so each pays its own imports and model.
    """
    import subprocess

    import ray

    from pipeline.data import write_shards
    from pipeline.data.layouts import FORMATS
    from pipeline.engine.sink import Sink

    folder = work / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(images):
        Image.fromarray((rng.random((*load.size, 3)) * 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(EXPRESSIONS[: load.expressions]) + "\n")
    per_shard = max(1, images // 8)
    write_shards(FORMATS["folder"](folder, prompts=prompts), str(work / "shards"), max_samples=per_shard)
    job = [sys.executable, str(ROOT / "jobs" / "pseudo_label.py"), "--shards", str(work / "shards" / "manifest.json")]
    job += ["--preset", preset_name, "--method", "evtp", "--keep", "0.2", "--actors", "1"]
    address = ray.init(include_dashboard=False, log_to_driver=False).address_info["gcs_address"]
    try:
        seconds, inside = {"bare": [], "ray": []}, {"bare": [], "ray": []}
        for r in range(rounds):
            for mode in ("bare", "ray"):
                out = work / f"out-{mode}-{r}"
                where = ["--no-ray"] if mode == "bare" else ["--address", address]
                start = time.perf_counter()
                done = subprocess.run(
                    [*job, "--output", str(out), *where], capture_output=True, text=True, check=False
                )
                seconds[mode].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise RuntimeError(f"{mode} job failed:\n{done.stderr[-3000:]}")
                stats = Sink(str(out)).stats()
                if sum(s["expressions"] for s in stats) != images * load.expressions or any(
                    s["errors"] for s in stats
                ):
                    raise RuntimeError(f"{mode} job: not every expression was processed once: {stats}")
                inside[mode].append(sum(s["seconds"] for s in stats))
            logging.info("engine round %d/%d done", r + 1, rounds)
    finally:
        ray.shutdown()
    expressions = images * load.expressions
    out = {"images": images, "expressions": expressions, "shards": -(-images // per_shard), "actors": 1}
    for mode in ("bare", "ray"):
        out[mode] = {
            "seconds": statistics.median(seconds[mode]),
            "expressions_per_second": expressions / statistics.median(seconds[mode]),
            "seconds_in_shards": statistics.median(inside[mode]),
            "rounds": seconds[mode],
        }
    out["ray_over_bare"] = out["bare"]["seconds"] / out["ray"]["seconds"]
    # What Ray adds outside the shards' own work: connecting, the actor's process, imports and model.
    outside = {m: out[m]["seconds"] - out[m]["seconds_in_shards"] for m in ("bare", "ray")}
    out["ray_fixed_seconds"] = outside["ray"] - outside["bare"]
    out["ray_over_bare_in_shards"] = out["bare"]["seconds_in_shards"] / out["ray"]["seconds_in_shards"]
    return out


# -- report -----------------------------------------------------------------------------------------------------


def print_flops(rows: list[dict], preset_name: str) -> None:
    names = {"pixel_decoder": "pixdec", "selection": "select", "projector": "proj"}
    print(f"\nFLOPs per expression and frame, {preset_name} (TF; FlopCounterMode on meta)")
    header = f"{'load':<8} {'keep':>5} {'share':>5} {'K':>4} " + " ".join(f"{names.get(s, s):>7}" for s in FLOP_STAGES)
    header += f" {'total':>7} {'speedup':>7}"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        cells = " ".join(f"{r['flops'][s] / 1e12:>7.4f}" for s in FLOP_STAGES)
        share = "on" if r["shared"] else "off"
        line = f"{r['load']:<8} {r['keep']:>5} {share:>5} {r['k']:>4} {cells} {r['total'] / 1e12:>7.4f} "
        print(line + f"{r['speedup']:>6.2f}x")


def print_wall(rows: list[dict], preset_name: str) -> None:
    names = {"pixel_decoder": "pixdec", "selection": "select", "postprocess": "post"}
    print(f"\nCPU wall-clock per expression and frame, {preset_name} (ms; median of rounds)")
    header = f"{'load':<8} {'keep':>5} {'share':>5} " + " ".join(f"{names.get(s, s):>6}" for s in WALL_STAGES)
    header += f" {'total':>7} {'speedup':>7} {'FLOP x':>7} {'ratio':>6} {'model':>6}"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        cells = " ".join(f"{1e3 * r['seconds'][s]:>6.1f}" for s in WALL_STAGES)
        share = "on" if r["shared"] else "off"
        print(
            f"{r['load']:<8} {r['keep']:>5} {share:>5} {cells} {1e3 * r['total']:>7.1f} {r['speedup']:>6.2f}x "
            f"{r['flops_speedup']:>6.2f}x {r['wall_over_flops']:>6.2f} {r['model_over_flops']:>6.2f}"
        )
    print("ratio: measured / FLOP speed-up end to end; model: the same over the stages FLOPs count")


def targets(flops: list[dict], wall: list[dict], engine: dict, headline: str) -> dict:
    def pick(rows):
        return next(r for r in rows if r["load"] == headline and r["keep"] == 0.2 and r["shared"])

    measured = {
        "flops_speedup": pick(flops)["speedup"],
        "wall_over_flops": pick(wall)["wall_over_flops"],
        "ray_over_bare": engine["ray_over_bare"],
    }
    out = {name: {"target": TARGETS[name], "measured": v, "met": v >= TARGETS[name]} for name, v in measured.items()}
    # Not a target of its own: the wall-clock ratio over the stages FLOPs count (no post-processing, no "other").
    model = pick(wall)["model_over_flops"]
    out["model_stages_over_flops"] = {"target": TARGETS["wall_over_flops"], "measured": model, "met": model >= 0.8}
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    args = parse_args(argv)
    torch.manual_seed(0)
    grid_loads = loads(args.quick)
    big = FlopTable(args.flops_preset)
    flops = flop_rows(big, [(load, phi2_layout(big.model.config, load)) for load in grid_loads])
    print_flops(flops, args.flops_preset)

    predictor = HyperSegPredictor.from_preset(args.wall_preset)
    grid = [(load, predictor_layout(predictor, load)) for load in grid_loads]
    small = FlopTable(args.wall_preset)
    wall_flops = flop_rows(small, grid)
    wall = wall_rows(predictor, grid, args.rounds)
    ratios(wall, wall_flops)
    print_wall(wall, args.wall_preset)

    refcoco = next(load for load in grid_loads if load.name == "refcoco")
    with tempfile.TemporaryDirectory() as work:
        engine = engine_rows(args.wall_preset, refcoco, args.engine_images, args.engine_rounds, Path(work))
    bare, on_ray = engine["bare"], engine["ray"]
    print(
        f"\nengine, {engine['images']} images x {refcoco.expressions} prompts, {args.wall_preset}, keep 0.2, 1 actor: "
        f"bare loop {bare['expressions_per_second']:.2f} expr/s, Ray {on_ray['expressions_per_second']:.2f} expr/s "
        f"({engine['ray_over_bare']:.1%} of the bare loop); inside the shards {on_ray['seconds_in_shards']:.1f} s vs "
        f"{bare['seconds_in_shards']:.1f} s ({engine['ray_over_bare_in_shards']:.1%}); Ray's fixed cost "
        f"{engine['ray_fixed_seconds']:.1f} s (connecting, the actor's process, its imports and model)"
    )
    met = targets(flops, wall, engine, headline="revos")
    print("\ntargets (ReVOS-like, keep 0.2 with sharing, against keep 1 without):")
    for name, t in met.items():
        print(f"  {name:<16} {t['measured']:>7.3f}  target >= {t['target']}  {'met' if t['met'] else 'NOT MET'}")

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "flops_preset": args.flops_preset,
        "wall_preset": args.wall_preset,
        "rounds": args.rounds,
        "keeps": list(KEEPS),
        "loads": [asdict(load) for load in grid_loads],
        "layouts": {
            "flops": {load.name: asdict(phi2_layout(big.model.config, load)) for load in grid_loads},
            "wall": {load.name: asdict(layout) for load, layout in grid},
        },
        "expressions": list(EXPRESSIONS),
        "notes": {
            "off": "the release: each expression runs the whole model on its frame (vision included)",
            "on": "vision, selection, FVP and LLM prefix once per frame; LLM suffix and mask decoder per expression",
            "llm_split": (
                "llm_shared: the frame's LLM prefix pass divided among its expressions (0 when off); llm_own: the "
                "expression's own LLM pass (its suffix against the cached prefix when on, its whole sequence when off)"
            ),
            "attention": (
                "counted as the kernel runs it: a full (not causal) score matrix, so a prefix and a suffix pass "
                "count P^2 + S(P + S) where the whole sequence counts (P + S)^2"
            ),
            "not_counted": "post-processing (upsampling and scoring of the 100 masks) and 'other' have no FLOPs",
            "wall_inputs": "seeded random uint8 frames; seeded random weights (scores mean nothing)",
            "engine": (
                "jobs/pseudo_label.py in a fresh process each time, --no-ray against --address of a Ray started "
                "before timing (a running cluster); seconds_in_shards: the shards' own processing time"
            ),
        },
    }
    report = {"meta": meta, "flops": flops, "wall_flops": wall_flops, "wall": wall, "engine": engine, "targets": met}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
