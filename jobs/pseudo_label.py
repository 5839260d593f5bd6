"""Pseudo-label an unlabeled corpus: every prompt on every image or video frame, masks and scores kept.

    python jobs/pseudo_label.py --shards s3://bucket/photos/manifest.json --output s3://bucket/labels --threshold 0.5
    python jobs/pseudo_label.py                       # built-in fixture (a folder of images and an mp4), shipped model

Make the shards with ``jobs/make_shards.py --format folder --prompts prompts.txt``. Every prediction goes to the
``predictions`` table; those at or above ``--threshold`` are the pseudo-labels, summarised per prompt.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data.fixtures.folder import write_folder  # noqa: E402
from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine import run  # noqa: E402
from pipeline.engine.cli import add_run_arguments, config_from_args, fixture_shards, format_table, write_report  # noqa: E402
from pipeline.results import load  # noqa: E402


def fixture(folder: Path) -> str:
    corpus = write_folder(str(folder / "corpus"))
    return fixture_shards(folder, FORMATS["folder"](corpus.corpus, fps=2, prompts=corpus.prompts_path))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_output="runs/pseudo-label")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep masks whose score is at least this")
    args = parser.parse_args(argv)
    config = config_from_args(args, fixture)
    summary = run(config, use_ray=not args.no_ray, overwrite=args.overwrite)
    predictions = load(config.output.uri, "predictions")
    accepted = predictions[predictions.score >= args.threshold]
    texts = _prompt_texts(config.data.shards)
    rows = []
    for expression_id, group in predictions.groupby("expression_id", sort=True):
        kept = accepted[accepted.expression_id == expression_id]
        rows.append(
            {
                "prompt": texts.get(expression_id, expression_id),
                "masks": len(group),
                "accepted": len(kept),
                "mean_score": float(group.score.mean()),
            }
        )
    table = format_table(rows, ["prompt", "masks", "accepted", "mean_score"])
    text = (
        f"{summary.samples} samples, {summary.frames} frames, {summary.errors} errors; "
        f"threshold {args.threshold}: {len(accepted)} of {len(predictions)} masks kept\n{table}"
    )
    print(text)
    write_report(config.output.uri, "pseudo_label", text, {"threshold": args.threshold, "rows": rows})
    return 0


def _prompt_texts(shards: str) -> dict[str, str]:
    """Expression id -> prompt text, from the first sample that has them (every folder sample has the same)."""
    from pipeline.data import Sample, read_samples

    for sample in read_samples(shards):
        if isinstance(sample, Sample) and sample.expressions:
            return {e.id: e.text for e in sample.expressions}
    return {}


if __name__ == "__main__":
    sys.exit(main())
