"""The user's way in: a run's tables as pandas DataFrames, masks back as numpy arrays.

from pipeline.results import load, decode_mask
predictions = load("runs/revos-evtp-0.2", "predictions")
mask = decode_mask(predictions.iloc[0])      # (H, W) bool
"""

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .data import rle
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
    """The filesystem and the sorted Parquet files of one table of a run folder (see ``load``), to read one at a
    time where the whole table would not fit in memory."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLE_NAMES}")
    fs, root = fsspec.core.url_to_fs(run.rstrip("/"))
    fs.invalidate_cache(f"{root}/{table}")  # another process (the run) wrote it since this one last listed it
    files = sorted(p for p in fs.glob(f"{root}/{table}/*.parquet") if not p.rsplit("/", 1)[-1].startswith((".", "_")))
    if committed_only and table != "runs":
        done = Sink(run).done()
        files = [p for p in files if p.rsplit("/", 1)[-1][: -len(".parquet")] in done]
    return fs, files


def read_table_file(
    fs: fsspec.AbstractFileSystem, path: str, table: str, columns: list[str] | None = None
) -> pa.Table:
    """One file of ``table`` with the current columns (or ``columns`` of them), an older version's missing ones
    as nulls."""
    target = schema(table)
    if columns is not None:
        target = pa.schema([target.field(c) for c in columns], metadata=target.metadata)
    present = set(pq.read_schema(path, filesystem=fs).names)
    data = pq.read_table(path, filesystem=fs, columns=[c for c in target.names if c in present])
    return _conform(data, target)


def _conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """``data`` with every column of ``target`` in its order: the ones an older version lacks as nulls."""
    columns = [
        data.column(field.name) if field.name in data.column_names else pa.nulls(len(data), field.type)
        for field in target
    ]
    return pa.Table.from_arrays(columns, schema=target)


def decode_mask(row) -> np.ndarray:
    """A ``predictions`` row's mask as ``(H, W)`` bool."""
    size = (int(row["mask_height"]), int(row["mask_width"]))
    return rle.decode({"size": list(size), "counts": row["mask_counts"]}, size)
