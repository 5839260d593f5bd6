"""Image evaluation: RefCOCO, RefCOCO+, RefCOCOg and ReasonSeg; gIoU and cIoU per split (LISA's definitions).

    python jobs/eval_refcoco.py                                 # held-out synthetic RefCOCO + ReasonSeg, shipped model
    python jobs/eval_refcoco.py --shards shards/refcocog-val/manifest.json --checkpoint /models/HyperSeg-3B \
        --method evtp --keep 0.2 --output runs/refcocog-evtp-0.2

Each sentence is one expression (LISA's convention); the ref ids kept in the shards allow HyperSeg's
one-instruction-per-ref convention to be rebuilt (metrics.md §4.5).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.cli import evaluation_job, fixture_shards, job_parser  # noqa: E402
from pipeline.engine.report import IMAGE_COLUMNS, image_summary  # noqa: E402
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
    args = job_parser(__doc__, default_output="runs/eval-refcoco").parse_args(argv)
    return evaluation_job(
        args,
        fixture,
        name="eval_refcoco",
        summarize=image_summary,
        columns=IMAGE_COLUMNS,
        counts=lambda s: f"{s.samples} images, {s.expressions} expressions, {s.errors} errors",
    )


if __name__ == "__main__":
    sys.exit(main())
