"""Speed on trained weights: how many queries post-processing scores, and the CPU speed-up against its FLOP ratio.

    python benchmarks/trained_speed.py                      # the shipped checkpoint -> results/trained_speed.json
    python benchmarks/trained_speed.py --quick --out /tmp/t.json   # tiny random preset, small loads (the test)

``benchmarks/speed.py`` times random weights, whose SEG logits all sit within a narrow band, so ``best_query``
(``pipeline.model.parts.postprocess``) can rule no query out and brings all 100 to full resolution. Trained weights
score one query far above the rest. On held-out synthetic videos (ReVOS-like, every expression of each frame)
and images (RefCOCO-like), with the shipped checkpoint, this measures:

1. per expression and frame, the queries ``best_query`` scored (distribution over all of them);
2. CPU wall-clock per expression and frame for keep 1.0 without sharing (the release: every expression runs the
   whole model) and EVTP at each keep with the shared prefix, the median of ``--rounds`` interleaved rounds, per
   stage;
3. the FLOP speed-up of exactly the sequences timed (``speed.FlopTable`` on the checkpoint's own sizes and
   sequence lengths), and the measured speed-up divided by it, end to end and over the stages FLOPs count.
"""

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name
from speed import MODEL_STAGES, WALL_STAGES, FlopTable, Layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.engine.cli import format_table  # noqa: E402
from pipeline.model import PruningConfig, load  # noqa: E402
from pipeline.model.parts.prompt import REFER_TOKEN_INDEX, format_instruction, refer_ids  # noqa: E402
from pipeline.synth.samples import generator, refcoco_image, revos_video  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "synth-hyperseg"  # where make train puts it
RESULTS = Path(__file__).resolve().parent / "results" / "trained_speed.json"
KEEPS = (1.0, 0.2, 0.1, 0.05)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(CHECKPOINT), help="a trained checkpoint folder")
    parser.add_argument("--videos", type=int, default=6, help="held-out videos (8 frames each)")
    parser.add_argument("--images", type=int, default=20, help="held-out images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny random preset, 1 video, 2 images, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.images, args.rounds = 1, 2, 1
    return args


def workloads(videos: int, images: int, quick: bool) -> dict[str, list[tuple[list[np.ndarray], list[str], str]]]:
    """Per load, its items: (frames, expression texts, task)."""
    frames = 3 if quick else 8
    revos = [revos_video(generator("val", "revos", i), frames) for i in range(videos)]
    refcoco = [refcoco_image(generator("val", "refcoco", i)) for i in range(images)]
    return {
        "revos": [(v.video.frames, [e.text for e in v.expressions], "video") for v in revos],
        "refcoco": [([s.scene.image], [e.text for e in s.expressions], "referring") for s in refcoco],
    }


def timed(predictor, items, keep: float, shared: bool) -> dict:
    """Seconds per expression and frame (total and per stage) and every expression-frame's queries scored."""
    predictor.pruning = PruningConfig("evtp", keep) if keep < 1 else PruningConfig()
    predictor.share_prefix = shared
    seconds, scored, count = dict.fromkeys(WALL_STAGES, 0.0), [], 0
    start = time.perf_counter()
    for frames, texts, task in items:
        calls = [texts] if shared else [[t] for t in texts]  # off: the release, one expression at a time
        for call in calls:
            per_frame = (
                predictor.predict_video(frames, call)
                if task == "video"
                else [predictor.predict(frames[0], call, task)]
            )
            for results in per_frame:
                for stage, value in results[0].seconds.items():
                    seconds[stage] += value
                scored += [r.queries_scored for r in results]
                count += len(results)
    total = time.perf_counter() - start
    seconds["other"] = total - sum(seconds.values())
    return {"seconds": {s: v / count for s, v in seconds.items()}, "total": total / count, "scored": scored}


def layouts(predictor, items) -> list[tuple[Layout, int]]:
    """The sequence layout of every (frame's expressions) call, with how many frames it runs on."""
    out = []
    config = predictor.model.config
    for frames, texts, task in items:
        ids = predictor.prompt_ids(task)
        at = ids.index(REFER_TOKEN_INDEX)
        refer = tuple(len(refer_ids(predictor.tokenizer, format_instruction(task, t))) for t in texts)
        layout = Layout(at - 2, len(ids) - at - 2, refer, config.fvp.num_latents, config.decoder.num_queries)
        out.append((layout, len(frames)))
    return out


def flops_per_expression(table: FlopTable, plans: list[tuple[Layout, int]], keep: float, shared: bool) -> float:
    """Mean FLOPs per expression and frame over the load's calls, weighted by their expression-frames."""
    total, count = 0.0, 0
    for layout, frames in plans:
        n = len(layout.refer) * frames
        total += table.per_expression(keep, layout, shared)["total"] * n
        count += n
    return total / count


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.manual_seed(0)
    if args.quick:
        predictor = load.from_preset("tiny")
        preset_name = "tiny"
    else:
        predictor = load.from_pretrained(args.checkpoint)
        preset_name = None
    loads = workloads(args.videos, args.images, args.quick)
    table = FlopTable(preset_name or "synth")
    if table.model.config != predictor.model.config:
        raise SystemExit("the checkpoint's sizes are not the synth preset's: FLOPs would be of another model")
    points = [(name, keep, keep < 1) for name in loads for keep in KEEPS]  # keep 1.0 unshared: the release
    for name in loads:  # warm-up
        timed(predictor, loads[name][:1], 1.0, False)
    runs: dict[tuple, list[dict]] = {p: [] for p in points}
    for r in range(args.rounds):
        for point in points:
            runs[point].append(timed(predictor, loads[point[0]], point[1], point[2]))
        logging.info("round %d/%d done", r + 1, args.rounds)
    rows = []
    for name, keep, shared in points:
        plans = layouts(predictor, loads[name])
        flops = flops_per_expression(table, plans, keep, shared)
        seconds = {s: statistics.median(run["seconds"][s] for run in runs[(name, keep, shared)]) for s in WALL_STAGES}
        scored = np.array(runs[(name, keep, shared)][0]["scored"])
        rows.append(
            {
                "load": name,
                "keep": keep,
                "shared": shared,
                "total": statistics.median(run["total"] for run in runs[(name, keep, shared)]),
                "seconds": seconds,
                "flops": flops,
                "queries_scored": {
                    "mean": float(scored.mean()),
                    "median": float(np.median(scored)),
                    "p90": float(np.percentile(scored, 90)),
                    "max": int(scored.max()),
                    "all_100": float(np.mean(scored == predictor.model.config.decoder.num_queries)),
                    "n": int(len(scored)),
                },
            }
        )
    for row in rows:
        base = next(r for r in rows if r["load"] == row["load"] and r["keep"] == 1.0)
        row["speedup"] = base["total"] / row["total"]
        row["flops_speedup"] = base["flops"] / row["flops"]
        row["wall_over_flops"] = row["speedup"] / row["flops_speedup"]
        model = [sum(r["seconds"][s] for s in MODEL_STAGES) for r in (base, row)]
        row["model_over_flops"] = model[0] / model[1] / row["flops_speedup"]
    printable = [
        {
            "load": r["load"],
            "keep": r["keep"],
            "shared": "on" if r["shared"] else "off",
            "ms": 1000 * r["total"],
            "postprocess ms": 1000 * r["seconds"]["postprocess"],
            "queries scored (mean)": r["queries_scored"]["mean"],
            "median": r["queries_scored"]["median"],
            "p90": r["queries_scored"]["p90"],
            "speed-up": r["speedup"],
            "FLOP speed-up": r["flops_speedup"],
            "wall / FLOPs": r["wall_over_flops"],
            "model stages / FLOPs": r["model_over_flops"],
        }
        for r in rows
    ]
    print(format_table(printable, list(printable[0])))
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, {platform.machine()}",
        "torch": torch.__version__,
        "model": preset_name or args.checkpoint,
        "videos": args.videos,
        "images": args.images,
        "rounds": args.rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
