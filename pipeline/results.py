"""The user's way in: a run's tables as pandas DataFrames, masks back as numpy arrays.

from pipeline.results import load, decode_mask
predictions = load("runs/revos-evtp-0.2", "predictions")
mask = decode_mask(predictions.iloc[0])      # (H, W) bool
"""

import fsspec
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .data import rle
from .engine.compact import compacted, part_paths
from .engine.sink import Sink
from .engine.tables import TABLE_NAMES, schema


def load(
    run: str,
    table: str,
    *,
    columns: list[str] | None = None,
    filters: list | pc.Expression | None = None,
    committed_only: bool = True,
) -> pd.DataFrame:
    """One table of a run folder (local or any fsspec URL), all shards' files together.

    ``columns`` reads only those columns (asking for scores never reads the RLE masks) and ``filters`` keeps
    only matching rows, both pushed down to the Parquet reader (a pyarrow dataset over the files): filters in
    pandas' form, ``[("score", ">", 0.5), ("split", "==", "valid")]`` (a list of such lists is an OR), or a
    ``pyarrow.compute`` expression. Only committed shards' files are read unless ``committed_only`` is False:
    a run that died between writing a shard's tables and committing it leaves complete files that the resumed
    run replaces. An empty frame with the table's columns when nothing was written yet. Files of an older
    tables version read with the columns added since as nulls (``schemas/README.md`` lists what each version
    added).
    """
    fs, files = table_files(run, table, committed_only=committed_only)
    target = schema(table)
    if columns is not None:
        unknown = sorted(set(columns) - set(target.names))
        if unknown:
            raise ValueError(f"{table} has no column {', '.join(unknown)}; its columns: {', '.join(target.names)}")
    if not files:
        empty = target.empty_table()
        return (empty.select(columns) if columns is not None else empty).to_pandas()
    # The contract's schema for every file: a column an older file lacks reads as nulls.
    dataset = ds.dataset(files, schema=target, filesystem=fs, format="parquet")
    if filters is not None and not isinstance(filters, pc.Expression):
        filters = pq.filters_to_expression(filters)
    return dataset.to_table(columns=columns, filter=filters).to_pandas()


def table_files(run: str, table: str, *, committed_only: bool = True) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The filesystem and the Parquet files of one table of a run folder (see ``load``), to read one at a time
    where the whole table would not fit in memory: the compacted parts (``jobs/compact.py``), then the per-shard
    files of the shards they do not hold, sorted."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLE_NAMES}")
    fs, root = fsspec.core.url_to_fs(run.rstrip("/"))
    fs.invalidate_cache(f"{root}/{table}")  # another process (the run) wrote it since this one last listed it
    present = {p.rsplit("/", 1)[-1]: p for p in fs.glob(f"{root}/{table}/*.parquet")}
    stems = {name[: -len(".parquet")]: path for name, path in present.items() if not name.startswith((".", "_"))}
    if table == "runs":
        return fs, sorted(stems.values())
    state = compacted(fs, root)
    names = state.parts.get(table, [])
    parts = part_paths(root, table, names, set(present))
    held = state.shards | set(names)  # a compacted shard's own file is left over from before its compaction
    files = {stem: path for stem, path in stems.items() if stem not in held}
    if committed_only:
        done = Sink(run).done()
        files = {stem: path for stem, path in files.items() if stem in done}
    return fs, parts + sorted(files.values())


def decode_mask(row) -> np.ndarray:
    """A ``predictions`` row's mask as ``(H, W)`` bool."""
    size = (int(row["mask_height"]), int(row["mask_width"]))
    return rle.decode({"size": list(size), "counts": row["mask_counts"]}, size)
