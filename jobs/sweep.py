"""Models x methods x keep ratios on one set: one table of accuracy, coverage and throughput, and a plot.

    python jobs/sweep.py                                # synthetic ReVOS fixture, the shipped model
    python jobs/sweep.py --shards shards/revos-valid/manifest.json \
        --models /models/HyperSeg-3B,/models/InstructSeg --keeps 0.05,0.1,0.2 --output runs/sweep-revos

``--models`` takes presets (random weights) and checkpoint folders, so one sweep compares both model families.
Each (model, method, keep) is a run of its own under ``{output}/{model}/{method}-{keep}`` (so each resumes on its
own); ``none`` at keep 1.0 is added per model as the unpruned reference. Accuracy is the first summary row's J&F
for videos (ReVOS overall) or cIoU for images; the coverage columns are the mean feature and grid radius of the
kept tokens over the run's frames (pruning.md §1.8; for FastV, over each expression's own tokens).
"""

import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import fsspec  # noqa: E402
from eval_revos import fixture  # noqa: E402

from pipeline.config import ModelConfig, OutputConfig  # noqa: E402
from pipeline.engine.cli import (  # noqa: E402
    SHIPPED_CHECKPOINT,
    config_from_args,
    exit_status,
    format_table,
    job_parser,
    keep_value,
    option_value,
    start,
    write_report,
)
from pipeline.engine.dryrun import estimate, report  # noqa: E402
from pipeline.engine.preflight import check_keep, check_method, fail  # noqa: E402
from pipeline.engine.report import image_summary, video_summary  # noqa: E402
from pipeline.results import load  # noqa: E402
from pipeline.viz import accuracy_speed_plot, side_by_side  # noqa: E402

COLUMNS = [
    "model",
    "method",
    "keep",
    "k",
    "accuracy",
    "metric",
    "feature_radius",
    "grid_radius",
    "frames_per_second",
    "expressions",
    "errors",
]
DEFAULT_MODELS = str(SHIPPED_CHECKPOINT)
# FastV's K defaults to 2; the tiny presets' LLM has only 2 layers, so the default sweep ranks at layer 1,
# which every preset and the shipped checkpoint (4 layers) allow.
DEFAULT_METHODS = "evtp,kcenter,divprune,random,grid,visionzip,fastv:layer=1"


def accuracy(metrics) -> tuple[float | None, str]:
    """The set's headline number: ReVOS's overall J&F for videos (or, when a category is empty and so overall is
    undefined, the first category that has expressions), cIoU for images."""
    videos = video_summary(metrics)
    if videos:
        finite = [r for r in videos if r["J&F"] is not None and not math.isnan(r["J&F"])]
        overall = [r for r in finite if r["category"] == "overall"] or finite or videos
        return overall[0]["J&F"], "J&F"
    images = image_summary(metrics)
    return (images[0]["cIoU"], "cIoU") if images else (None, "none")


def throughput(runs) -> float | None:
    """Frames per second of the latest run of a folder that processed any (a resumed, finished one did not)."""
    worked = runs[runs.frames > 0].sort_values("finished_at")
    return float(worked.frames_per_second.iloc[-1]) if len(worked) else None


def method_spec(text: str) -> tuple[str, tuple[tuple[str, object], ...]]:
    """``fastv:layer=1`` -> ``("fastv", (("layer", 1),))``: a method and its options, ``:``-separated."""
    name, *options = text.split(":")
    return name, tuple(option_value(o) for o in options)


def model_config(entry: str, base: ModelConfig) -> tuple[str, ModelConfig]:
    """A ``--models`` entry: a checkpoint folder if one exists there, else a preset name; with the run's dtype and
    speed flags. (Presets are not looked up here: that would import the model into the driver.)"""
    speed = {f: getattr(base, f) for f in ("dtype", "attn_implementation", "share_prefix", "compile")}
    if Path(entry).is_dir():
        return Path(entry.rstrip("/")).name, ModelConfig(preset=None, checkpoint=entry, **speed)
    return entry, ModelConfig(preset=entry, **speed)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, default_output="runs/sweep")
    parser.add_argument(
        "--models",
        help=f"comma-separated presets or checkpoint folders (default: --preset/--checkpoint, else {DEFAULT_MODELS})",
    )
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help="comma-separated methods, each with its options: fastv:layer=2"
    )
    parser.add_argument("--keeps", default="0.1,0.2", help="comma-separated keep ratios or counts")
    args = parser.parse_args(argv)
    base = config_from_args(args, fixture)
    models = args.models or args.checkpoint or args.preset or DEFAULT_MODELS
    try:
        grid = [("none", 1.0)] + [(m, keep_value(k)) for m in args.methods.split(",") for k in args.keeps.split(",")]
        for method, keep in grid:
            check_method(method_spec(method)[0])
            check_keep(keep)
    except ValueError as error:
        fail(Path(sys.argv[0]).name or "sweep.py", error)
    rows, status = [], 0
    for entry in models.split(","):
        label, model = model_config(entry, base.model)
        for method, keep in grid:
            folder = method.replace(":", "-").replace("=", "")
            out = f"{base.output.uri.rstrip('/')}/{label}/{folder}-{keep}"
            name, options = method_spec(method)
            pruning = dataclasses.replace(base.pruning, method=name, keep=keep, options=options)
            config = dataclasses.replace(base, output=OutputConfig(out), model=model, pruning=pruning)
            if args.dry_run:  # every configuration's plan, then stop
                print(report(config, estimate(config, args.gpu_tflops)) + "\n")
                continue
            summary = start(config, args)
            status = max(status, exit_status(summary))
            runs = load(out, "runs")
            value, metric = accuracy(load(out, "metrics"))
            tokens = load(out, "tokens")
            rows.append(
                {
                    "model": label,
                    "method": method,
                    "keep": keep,
                    "k": int(tokens.k.iloc[0]) if len(tokens) else None,
                    "accuracy": value,
                    "metric": metric,
                    "feature_radius": float(tokens.feature_radius.mean()) if len(tokens) else None,
                    "grid_radius": float(tokens.grid_radius.mean()) if len(tokens) else None,
                    "frames_per_second": throughput(runs),
                    "expressions": summary.expressions,
                    "errors": summary.errors,
                }
            )
    if args.dry_run:
        return 0
    text = format_table(rows, COLUMNS)
    print(text)
    write_report(base.output.uri, "sweep", text, {"rows": rows})
    plots = []
    for label in dict.fromkeys(r["model"] for r in rows):  # one panel per model, a colour per method
        points = [
            (r["method"], f"{r['keep']}", r["frames_per_second"], r["accuracy"])
            for r in rows
            # A NaN accuracy (ReVOS "overall" when a category has no expressions) has no place on the plot.
            if r["model"] == label
            and r["accuracy"] is not None
            and not math.isnan(r["accuracy"])
            and r["frames_per_second"] is not None
        ]
        if points:
            plots.append((accuracy_speed_plot(points, y_label=rows[0]["metric"]), label))
    if plots:
        fs, root = fsspec.core.url_to_fs(base.output.uri.rstrip("/"))
        with fs.open(f"{root}/_report/sweep.png", "wb") as f:
            side_by_side([p for p, _ in plots], [t for _, t in plots]).save(f, format="PNG")
        print(f"plot: {base.output.uri.rstrip('/')}/_report/sweep.png")
    return status


if __name__ == "__main__":
    sys.exit(main())
