"""Image evaluation: RefCOCO, RefCOCO+, RefCOCOg and ReasonSeg; gIoU and cIoU per split (LISA's definitions).

    python jobs/eval_refcoco.py                                 # held-out synthetic RefCOCO + ReasonSeg, shipped model
    python jobs/eval_refcoco.py --shards shards/refcocog-val/manifest.json --checkpoint /models/HyperSeg-3B \
        --method evtp --keep 0.2 --output runs/refcocog-evtp-0.2

Each sentence is one expression (LISA's convention); the ref ids kept in the shards allow HyperSeg's
one-instruction-per-ref convention to be rebuilt (metrics.md §4.5).
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.cli import (  # noqa: E402
    add_run_arguments,
    config_from_args,
    exit_status,
    fixture_shards,
    format_table,
    start,
    write_overlay,
    write_report,
)
from pipeline.engine.report import IMAGE_COLUMNS, image_summary  # noqa: E402
from pipeline.results import load  # noqa: E402
from pipeline.synth.write import write_reasonseg, write_refcoco  # noqa: E402


def fixture(folder: Path) -> str:
    """Held-out scenes of the synthetic world, in the RefCOCO and ReasonSeg layouts."""
    write_refcoco(folder / "refer", split="val", count=8)
    write_reasonseg(folder / "reasonseg", split="val", count=4)
    samples = [
        *FORMATS["refcoco"](folder / "refer", split="val"),
        *FORMATS["reasonseg"](folder / "reasonseg", split="val"),
    ]
    return fixture_shards(folder, samples)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_output="runs/eval-refcoco")
    args = parser.parse_args(argv)
    config = config_from_args(args, fixture)
    summary = start(config, args)
    rows = image_summary(load(config.output.uri, "metrics"))
    p = config.pruning
    header = (
        f"{config.model.checkpoint or 'preset ' + config.model.preset}, {p.method} keep {p.keep}: "
        f"{summary.samples} images, {summary.expressions} expressions, {summary.errors} errors"
    )
    text = header + "\n" + format_table(rows, IMAGE_COLUMNS)
    if summary.expressions:
        text += f"\noverlay: {write_overlay(config.output.uri, config.data.shards)}"
    print(text)
    write_report(config.output.uri, "eval_refcoco", text, {"summary": vars(summary), "rows": rows})
    return exit_status(summary)


if __name__ == "__main__":
    sys.exit(main())
