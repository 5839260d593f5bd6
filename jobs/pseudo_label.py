"""Pseudo-label an unlabeled corpus: every prompt on every image or video frame, then datasets from the masks.

    python jobs/pseudo_label.py --shards s3://bucket/photos/manifest.json --output s3://bucket/labels \\
        --ontology ontology.yaml --min-score 0.5 --dedup-iou 0.8
    python jobs/pseudo_label.py        # built-in corpus (synthetic-world pictures and video, three photographs)

Make the shards with ``jobs/make_shards.py --format folder --prompts prompts.txt``. Every prediction goes to the
``predictions`` table with its quality signals; then the masks that pass the filters are exported (``--export``,
default COCO and SA-V, under ``<output>/exports/``) with a QC sheet (``exports/qc/index.html``). Export again with
other filters or formats without re-running the model: ``jobs/export_labels.py --run <output> ...``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data.fixtures.corpus import VIDEO_FPS, write_corpus  # noqa: E402
from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.cli import (  # noqa: E402
    config_from_args,
    exit_status,
    fixture_shards,
    format_table,
    job_parser,
    start,
    write_report,
)
from pipeline.labels.export import FILE_FORMATS, export  # noqa: E402
from pipeline.labels.export import FORMATS as EXPORTS  # noqa: E402
from pipeline.labels.ontology import Ontology, OntologyError  # noqa: E402
from pipeline.labels.options import COLUMNS, add_filter_arguments, filters_from_args, ontology_from_args  # noqa: E402
from pipeline.labels.source import LabelsError  # noqa: E402


def fixture(folder: Path) -> str:
    corpus, prompts = write_corpus(str(folder / "corpus"))
    return fixture_shards(folder, FORMATS["folder"](corpus, fps=VIDEO_FPS, prompts=prompts), max_samples=4)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, default_output="runs/pseudo-label")
    add_filter_arguments(parser)
    parser.set_defaults(min_score=0.5)
    parser.add_argument(
        "--export", default="coco,sav", help=f"comma-separated formats to write ({', '.join(EXPORTS)}), or none"
    )
    parser.add_argument("--no-qc", action="store_true", help="no QC sheet")
    args = parser.parse_args(argv)
    formats = [] if args.export in ("", "none") else args.export.split(",")
    try:
        filters = filters_from_args(args)
        unknown = sorted(set(formats) - set(EXPORTS))
        if unknown:
            raise ValueError(f"unknown export formats {unknown}; expected some of {sorted(EXPORTS)}")
        if args.ontology:
            Ontology.load(args.ontology)  # readable and consistent; its prompts are checked after the run
    except (ValueError, OntologyError) as error:
        print(f"pseudo_label: error: {error}", file=sys.stderr)
        return 2
    config = config_from_args(args, fixture)
    summary = start(config, args)
    output = config.output.uri.rstrip("/")
    try:
        ontology = ontology_from_args(args, output) if formats else None  # it reads the run's prompts
    except (OntologyError, LabelsError) as error:
        print(f"pseudo_label: error: {error}", file=sys.stderr)
        return 2
    text = f"{summary.samples} samples, {summary.frames} frames, {summary.errors} errors"
    exported = None
    for i, fmt in enumerate(formats):
        out = f"{output}/exports/{fmt}" + (".json" if fmt in FILE_FORMATS else "")
        qc = f"{output}/exports/qc" if i == 0 and not args.no_qc else None
        exported = export(output, fmt, out, filters, ontology, qc=qc)
        text += f"\n{fmt}: {out}" + (f" (QC sheet {qc}/index.html)" if qc else "")
    if exported is not None:
        text += "\n" + format_table(exported.rows(), COLUMNS)
    print(text)
    write_report(output, "pseudo_label", text, {"rows": exported.rows() if exported else [], "formats": formats})
    return exit_status(summary)


if __name__ == "__main__":
    sys.exit(main())
