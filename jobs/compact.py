"""Merge a run folder's per-shard files into a few large ones, so queries over a big run open few files.

    python jobs/compact.py --run runs/revos-evtp-0.2
    python jobs/compact.py --run s3://bucket/labels --target-mb 512

A run writes one Parquet file per table per shard; past about a thousand shards, opening them dominates a query
(docs/performance.md, "Querying results at size"). Compaction keeps the ``_done`` contract: the markers stay, so
the same run command resumes as before, ``pipeline.results.load`` reads the same rows, and a crash at any point
loses nothing (run it again to finish). It takes the folder's lease, so it never runs beside the folder's driver.
Run it again after more shards were committed: it merges only the new ones.
"""

import argparse
import logging
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.engine.cli import format_table  # noqa: E402
from pipeline.engine.compact import TARGET_BYTES, compact  # noqa: E402
from pipeline.engine.lease import Lease, LeaseHeld  # noqa: E402
from pipeline.engine.preflight import ConfigError  # noqa: E402
from pipeline.engine.sink import CONFIG, Sink  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run folder (local or any fsspec URL)")
    parser.add_argument("--target-mb", type=float, default=TARGET_BYTES / 2**20, help="a part's size (MiB)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.target_mb <= 0:
        parser.error("--target-mb must be positive")
    try:
        sink = Sink(args.run)
        if not sink.fs.exists(f"{sink.root}/{CONFIG}"):  # before the lease, which would create the folder
            raise ConfigError(f"{args.run} is not a run folder (it has no {CONFIG})")
        with Lease(args.run, f"compact-{uuid.uuid4().hex[:8]}"):
            tables = compact(args.run, target_bytes=int(args.target_mb * 2**20), progress=not args.no_progress)
    except (ConfigError, LeaseHeld) as error:
        print(f"compact: error: {error}", file=sys.stderr)
        return 2
    if not tables:
        print(f"{args.run}: nothing to compact (every committed shard is compacted)")
        return 0
    rows = [
        {
            "table": t.table,
            "rows": t.rows,
            "files before": t.files_before,
            "files after": t.files_after,
            "MB before": round(t.bytes_before / 2**20, 1),
            "MB after": round(t.bytes_after / 2**20, 1),
        }
        for t in tables
    ]
    print(format_table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
