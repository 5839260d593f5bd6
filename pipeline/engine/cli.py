"""What every job shares: the common flags, the RunConfig they make, the built-in fixture, the report files.

Common flags: ``--shards``, ``--output``, ``--preset`` or ``--checkpoint``, ``--method``, ``--keep``, ``--option``,
``--actors``, ``--batch-size``, ``--max-attempts``, ``--address``. Without ``--shards`` a job runs on its
small built-in fixture (written in the official layout, converted to shards under the run folder's hidden
``_fixture/``); without ``--preset`` or ``--checkpoint`` it runs the shipped checkpoint, the miniature trained on the
synthetic world (``checkpoints/synth-hyperseg``).
"""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import fsspec

from ..config import ClusterConfig, DataConfig, ModelConfig, OutputConfig, PruningConfig, RunConfig
from ..data import write_shards
from .dryrun import GPU_TFLOPS, estimate, report
from .lease import LeaseHeld, LeaseLost
from .preflight import ConfigError, check_output, check_run, fail
from .run import RunSummary, run

logger = logging.getLogger(__name__)

REPORT = "_report"
# The miniature HyperSeg trained on the synthetic world (jobs/train.py), committed with its card.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "synth-hyperseg"


def job_parser(doc: str, default_output: str) -> argparse.ArgumentParser:
    """A job's parser with the flags every job takes (its description: the first paragraph of ``doc``); sets up
    logging."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_run_arguments(parser, default_output)
    return parser


def evaluation_job(
    args: argparse.Namespace,
    fixture: Callable[[Path], str],
    *,
    name: str,
    summarize: Callable,
    columns: list[str],
    counts: Callable[[RunSummary], str],
    extra: Callable[[RunConfig], str] | None = None,
) -> int:
    """An evaluation job after its flags: run (or resume) it, print the per-split table of the ``metrics`` table
    read back (``summarize`` and ``columns`` from ``report``) under a header with ``counts(summary)``, draw the
    overlay, append ``extra(config)``, write ``_report/{name}``; returns the exit status."""
    from ..results import load

    config = config_from_args(args, fixture)
    summary = start(config, args)
    rows = summarize(load(config.output.uri, "metrics"))
    p = config.pruning
    header = (
        f"{config.model.checkpoint or 'preset ' + config.model.preset}, {p.method} keep {p.keep}: {counts(summary)}"
    )
    text = header + "\n" + format_table(rows, columns)
    if summary.expressions:
        text += f"\noverlay: {write_overlay(config.output.uri, config.data.shards)}"
    if extra is not None:
        text += extra(config)
    print(text)
    write_report(config.output.uri, name, text, {"summary": vars(summary), "rows": rows})
    return exit_status(summary)


def add_run_arguments(parser: argparse.ArgumentParser, default_output: str) -> None:
    """The flags every job takes."""
    parser.add_argument("--shards", help="input shards: URL, glob, brace pattern or manifest.json (default: fixture)")
    parser.add_argument("--output", default=default_output, help="run folder, local or any fsspec URL")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--preset", default=None, help="random-weight preset: tiny, bench, hyperseg-3b, instructseg(-tiny/-bench)"
    )
    weights.add_argument(
        "--checkpoint",
        help="a HyperSeg or InstructSeg checkpoint folder in the released layout (default: the shipped miniature, "
        "checkpoints/synth-hyperseg)",
    )
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16, float16")
    parser.add_argument(
        "--method",
        default="evtp",
        help="token selection: evtp, kcenter, divprune, random, grid, visionzip, fastv (in the LLM), none",
    )
    parser.add_argument(
        "--option",
        action="append",
        type=option_value,
        default=[],
        metavar="NAME=VALUE",
        help="a method option, repeatable: e.g. layer=1 (fastv's K), contextual=0.25 (visionzip), alpha=0.5 (evtp)",
    )
    parser.add_argument(
        "--keep", type=keep_value, default=0.2, help="kept visual tokens: a ratio (0.2) or a count (64)"
    )
    parser.add_argument("--position-ids", default="contiguous", choices=("contiguous", "original"))
    parser.add_argument(
        "--prune-references",
        action="store_true",
        help="InstructSeg: also prune the reference frames' tokens before the OVP (default: it reads all of them)",
    )
    parser.add_argument(
        "--no-share-prefix",
        action="store_true",
        help="run every expression's whole prompt, as the release does (default: the visual prefix once per frame)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile SigLIP and the LLM in each actor (compiling takes a while; pays on long GPU runs)",
    )
    parser.add_argument("--actors", type=int, default=1, help="model copies (one GPU each when the cluster has GPUs)")
    parser.add_argument("--batch-size", type=int, default=1, help="shards per actor call")
    parser.add_argument("--image-batch", type=int, default=8, help="image samples segmented in one model call")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="attempts at a shard whose workers die before it is given up",
    )
    parser.add_argument(
        "--io-tries", type=int, default=3, help="tries at reading a shard or writing its tables when storage fails"
    )
    parser.add_argument("--io-backoff", type=float, default=1.0, help="seconds before the second try, then doubling")
    parser.add_argument(
        "--lease-timeout",
        type=float,
        default=120.0,
        help="seconds without a heartbeat after which another driver may take over the run folder",
    )
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--no-ray", action="store_true", help="run the shards in this process, without Ray")
    parser.add_argument("--overwrite", action="store_true", help="replace an output folder of another configuration")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the shards, samples, frames and expressions done and pending, their FLOPs and GPU-hours, and stop"
        " (no Ray, no model)",
    )
    parser.add_argument(
        "--gpu-tflops",
        type=float,
        default=GPU_TFLOPS,
        help=f"sustained TFLOP/s per GPU for --dry-run's GPU-hours (default {GPU_TFLOPS:g}: an assumption, about a "
        "third of an A100's dense bf16 peak)",
    )


def keep_value(text: str) -> float | int:
    """``0.2`` is a ratio, ``64`` a count."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def option_value(text: str) -> tuple[str, object]:
    """``layer=2`` -> ``("layer", 2)``: an int, else a float, else the text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"an option is NAME=VALUE, got {text!r}")
    for parse in (int, float):
        try:
            return name, parse(value)
        except ValueError:
            pass
    return name, value


def config_from_args(args: argparse.Namespace, fixture: Callable[[Path], str]) -> RunConfig:
    """The run's config, checked before any work starts (``preflight``: a bad one exits 2 with one line on stderr);
    without ``--shards``, ``fixture(folder)`` builds shards and returns their manifest."""
    program = Path(sys.argv[0]).name or "job"
    try:
        check_output(args.output)
        config = _config(args, fixture)
        check_run(config)
    except (ConfigError, ValueError) as error:
        fail(program, error)
    return config


def _config(args: argparse.Namespace, fixture: Callable[[Path], str]) -> RunConfig:
    shards = args.shards
    if shards is None:
        if "://" in args.output and not args.output.startswith("file://"):
            raise ConfigError(
                f"--output {args.output}: the built-in fixture is written under a local output folder; give --shards "
                "(for example shards that make_shards.py wrote) to run on this one"
            )
        folder = Path(args.output) / "_fixture"
        shards = fixture(folder)
        logger.info("no --shards: using the built-in fixture %s", shards)
    speed = {"dtype": args.dtype, "share_prefix": not args.no_share_prefix, "compile": args.compile}
    if args.preset:
        model = ModelConfig(preset=args.preset, **speed)
    else:
        model = ModelConfig(preset=None, checkpoint=args.checkpoint or str(SHIPPED_CHECKPOINT), **speed)
    return RunConfig(
        data=DataConfig(shards),
        output=OutputConfig(args.output),
        model=model,
        pruning=PruningConfig(
            args.method,
            args.keep,
            tuple(args.option),
            position_ids=args.position_ids,
            references=args.prune_references,
        ),
        cluster=ClusterConfig(
            address=args.address,
            actors=args.actors,
            batch_size=args.batch_size,
            max_attempts=args.max_attempts,
            io_tries=args.io_tries,
            io_backoff=args.io_backoff,
            image_batch=args.image_batch,
            lease_timeout=args.lease_timeout,
        ),
    )


def start(config: RunConfig, args: argparse.Namespace) -> RunSummary:
    """``run(config)`` for a job: a folder that another driver holds, or that holds a run of another configuration,
    is one line on stderr and exit code 2, before any work; a lease lost mid-run is one line and exit 1. With
    ``--dry-run`` the plan's counts and costs are printed instead, and the job exits 0."""
    program = Path(sys.argv[0]).name or "job"
    if getattr(args, "dry_run", False):
        print(report(config, estimate(config, args.gpu_tflops)))
        raise SystemExit(0)
    try:
        return run(config, use_ray=not args.no_ray, overwrite=args.overwrite)
    except (LeaseHeld, ConfigError) as error:
        fail(program, error)
    except LeaseLost as error:  # another driver took the folder over while this one stalled: it carries on
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def exit_status(summary, program: str | None = None) -> int:
    """0 for a run that did its work; else 1, with one line on stderr: shards were given up (left uncommitted, so
    the same command retries them), or every sample this run read failed (the ``errors`` table says why)."""
    program = program or Path(sys.argv[0]).name or "job"
    if summary.failed_shards:
        print(
            f"{program}: {len(summary.failed_shards)} of {summary.shards_total} shards failed and were left "
            "uncommitted; run the same command again to retry them",
            file=sys.stderr,
        )
        return 1
    if summary.samples and not summary.processed:
        print(f"{program}: every one of the {summary.samples} samples failed; see the errors table", file=sys.stderr)
        return 1
    return 0


def fixture_shards(folder: Path, samples, *, max_samples: int = 1) -> str:
    """Write fixture samples as shards under ``folder/shards`` (once) and return the manifest URL."""
    manifest = folder / "shards" / "manifest.json"
    if not manifest.is_file():
        write_shards(samples, str(folder / "shards"), max_samples=max_samples)
    return str(manifest)


def write_report(output: str, name: str, text: str, data: object) -> str:
    """``{output}/_report/{name}.txt`` and ``.json``: the printed table and its numbers."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    fs.makedirs(f"{root}/{REPORT}", exist_ok=True)
    with fs.open(f"{root}/{REPORT}/{name}.txt", "w") as f:
        f.write(text + "\n")
    with fs.open(f"{root}/{REPORT}/{name}.json", "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)
    return f"{output.rstrip('/')}/{REPORT}/{name}.txt"


def write_overlay(output: str, shards: str) -> str:
    """``{output}/_report/overlay.png``: the run's first expressions with their masks and kept tokens."""
    from ..viz import run_overlay  # drawing is only needed here

    url = f"{output.rstrip('/')}/{REPORT}/overlay.png"
    with fsspec.open(url, "wb") as f:
        run_overlay(output, shards).save(f, format="PNG")
    return url


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table: floats with 4 significant decimals, columns padded."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
