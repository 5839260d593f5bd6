"""The export options the jobs share: filters, the ontology and the summary table's columns."""

import argparse

from .filters import Filters
from .ontology import Ontology
from .source import run_prompts

COLUMNS = ["category", "masks", "accepted", "mean_score", "mean_stability", "mean_area_fraction"]


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-score", type=float, default=0.0, help="keep masks whose score is at least this")
    parser.add_argument("--min-stability", type=float, default=0.0, help="SAM's stability score, at least this")
    parser.add_argument("--min-area", type=int, default=1, help="mask pixels, at least this (1: no empty masks)")
    parser.add_argument("--max-area-fraction", type=float, default=1.0, help="mask area over frame area, at most")
    parser.add_argument(
        "--dedup-iou", type=float, help="on one frame, of two masks with IoU above this, drop the lower-scored one"
    )
    parser.add_argument("--ontology", help="JSON or YAML map from prompt to {name, id} (or a name)")


def filters_from_args(args: argparse.Namespace) -> Filters:
    return Filters(args.min_score, args.min_stability, args.min_area, args.max_area_fraction, args.dedup_iou)


def ontology_from_args(args: argparse.Namespace, run: str) -> Ontology:
    """The ontology, checked against every prompt of the run (an unmapped prompt is an error naming it)."""
    prompts = run_prompts(run)
    if not args.ontology:
        return Ontology.identity(prompts)
    ontology = Ontology.load(args.ontology)
    ontology.check(prompts)
    return ontology
