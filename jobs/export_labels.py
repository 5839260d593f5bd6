"""Export a run's predictions as a labelled dataset: filtered, mapped to categories, in a standard layout.

    python jobs/export_labels.py --run runs/pseudo-label --format coco --out labels/coco.json --min-score 0.5 --qc
    python jobs/export_labels.py --run runs/pseudo-label --format labelstudio --out ls/tasks.json \\
        --image-url-prefix /data/local-files/?d=photos/ --ontology ontology.yaml
    python jobs/export_labels.py --run s3://bucket/labels --format sav --out s3://bucket/sav --dedup-iou 0.8

Formats: ``coco`` (a dataset JSON), ``coco-results`` (the list ``COCO.loadRes`` takes), ``labelstudio`` (tasks with
brush pre-annotations and ``label_config.xml``), ``sav`` (one SA-V JSON per video) and ``davis``
(``Annotations/<video>/<frame>.png`` and ``meta.json``). No model runs: the filters apply to the stored signals.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.engine.cli import format_table, write_report  # noqa: E402
from pipeline.labels.export import FILE_FORMATS, FORMATS, export, model_version  # noqa: E402
from pipeline.labels.files import parent  # noqa: E402
from pipeline.labels.ontology import OntologyError  # noqa: E402
from pipeline.labels.options import COLUMNS, add_filter_arguments, filters_from_args, ontology_from_args  # noqa: E402
from pipeline.labels.source import LabelsError  # noqa: E402


def summary_text(summary) -> str:
    head = f"{summary.samples} samples, {summary.frames} frames -> {summary.format} at {summary.out}"
    if summary.skipped_images:
        head += f" ({summary.skipped_images} image samples left out: {summary.format} holds videos)"
    return head + "\n" + format_table(summary.rows(), COLUMNS)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run folder (local or any fsspec URL)")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--out", required=True, help=f"a JSON file for {', '.join(FILE_FORMATS)}; else a folder")
    add_filter_arguments(parser)
    parser.add_argument("--copy-images", action="store_true", help="write the frames beside the labels")
    parser.add_argument("--image-url-prefix", default="", help="labelstudio: prepended to each image's file name")
    parser.add_argument("--qc", nargs="?", const="", help="write the QC sheet (default folder: qc/ beside the labels)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        model_version(args.run)  # a run folder, readable
        filters = filters_from_args(args)
        ontology = ontology_from_args(args, args.run)
    except (ValueError, OntologyError, LabelsError) as error:
        print(f"export_labels: error: {error}", file=sys.stderr)
        return 2
    qc = None
    if args.qc is not None:
        base = args.out.rstrip("/")
        qc = args.qc or (f"{parent(base)}/qc" if args.format in FILE_FORMATS else f"{base}/qc")
    try:
        summary = export(
            args.run,
            args.format,
            args.out,
            filters,
            ontology,
            copy_images=args.copy_images,
            image_url_prefix=args.image_url_prefix,
            qc=qc,
            progress=not args.no_progress,
        )
    except LabelsError as error:
        print(f"export_labels: error: {error}", file=sys.stderr)
        return 1
    text = summary_text(summary)
    print(text)
    if qc is not None:
        print(f"QC sheet: {qc}/index.html")
    write_report(args.run, f"export_{args.format}", text, {"rows": summary.rows(), "out": args.out, "qc": qc})
    return 0


if __name__ == "__main__":
    sys.exit(main())
