"""Methods x keep ratios on one set: one table of accuracy and throughput, and an accuracy-versus-speed plot.

    python jobs/sweep.py                                        # ReVOS + MeViS fixture, tiny preset
    python jobs/sweep.py --shards shards/revos-valid/manifest.json --checkpoint /models/HyperSeg-3B \
        --methods evtp,kcenter,divprune,random,grid --keeps 0.05,0.1,0.2 --output runs/sweep-revos

Each configuration is a run of its own under ``{output}/{method}-{keep}`` (so each resumes on its own); ``none``
at keep 1.0 is added as the unpruned reference. Accuracy is the first summary row's J&F for videos (ReVOS
overall) or cIoU for images.
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import fsspec  # noqa: E402
from eval_revos import fixture  # noqa: E402

from pipeline.config import OutputConfig  # noqa: E402
from pipeline.engine import run  # noqa: E402
from pipeline.engine.cli import add_run_arguments, config_from_args, format_table, keep_value, write_report  # noqa: E402
from pipeline.engine.report import image_summary, video_summary  # noqa: E402
from pipeline.model import PruningConfig  # noqa: E402
from pipeline.results import load  # noqa: E402
from pipeline.viz import accuracy_speed_plot  # noqa: E402

COLUMNS = ["method", "keep", "k", "accuracy", "metric", "frames_per_second", "expressions", "errors"]


def accuracy(metrics) -> tuple[float | None, str]:
    """The set's headline number: overall (or first) J&F for videos, cIoU for images."""
    videos = video_summary(metrics)
    if videos:
        overall = [r for r in videos if r["category"] == "overall"] or videos
        return overall[0]["J&F"], "J&F"
    images = image_summary(metrics)
    return (images[0]["cIoU"], "cIoU") if images else (None, "none")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_output="runs/sweep")
    parser.add_argument("--methods", default="evtp,kcenter,random,grid", help="comma-separated methods")
    parser.add_argument("--keeps", default="0.1,0.2", help="comma-separated keep ratios or counts")
    args = parser.parse_args(argv)
    base = config_from_args(args, fixture)
    grid = [("none", 1.0)] + [(m, keep_value(k)) for m in args.methods.split(",") for k in args.keeps.split(",")]
    rows = []
    for method, keep in grid:
        out = f"{base.output.uri.rstrip('/')}/{method}-{keep}"
        config = dataclasses.replace(
            base, output=OutputConfig(out), pruning=PruningConfig(method, keep, position_ids=base.pruning.position_ids)
        )
        summary = run(config, use_ray=not args.no_ray, overwrite=args.overwrite)
        runs = load(out, "runs")
        value, metric = accuracy(load(out, "metrics"))
        k = load(out, "tokens").k
        rows.append(
            {
                "method": method,
                "keep": keep,
                "k": int(k.iloc[0]) if len(k) else None,
                "accuracy": value,
                "metric": metric,
                "frames_per_second": float(runs.sort_values("finished_at").frames_per_second.iloc[-1]),
                "expressions": summary.expressions,
                "errors": summary.errors,
            }
        )
    text = format_table(rows, COLUMNS)
    print(text)
    write_report(base.output.uri, "sweep", text, {"rows": rows})
    points = [
        (f"{r['method']} {r['keep']}", r["frames_per_second"], r["accuracy"])
        for r in rows
        if r["accuracy"] is not None
    ]
    if points:
        fs, root = fsspec.core.url_to_fs(base.output.uri.rstrip("/"))
        with fs.open(f"{root}/_report/sweep.png", "wb") as f:
            accuracy_speed_plot(points, y_label=rows[0]["metric"]).save(f, format="PNG")
        print(f"plot: {base.output.uri.rstrip('/')}/_report/sweep.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
