"""The output tables' pyarrow schemas, built from the contract in ``schemas/tables.json``."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TABLES_PATH = Path(__file__).resolve().parents[2] / "schemas" / "tables.json"
_CONTRACT = json.loads(TABLES_PATH.read_text())
TABLES_VERSION = _CONTRACT["version"]
TABLE_NAMES = tuple(_CONTRACT["tables"])

_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "list<int32>": pa.list_(pa.int32()),
    "list<string>": pa.list_(pa.string()),
}


def schema(table: str) -> pa.Schema:
    """The pyarrow schema of an output table, with each field's doc and the contract version as metadata."""
    if table not in _CONTRACT["tables"]:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLE_NAMES}")
    fields = [pa.field(name, _TYPES[kind], metadata={"doc": doc}) for name, kind, doc in _CONTRACT["tables"][table]]
    return pa.schema(fields, metadata={"table": table, "version": str(TABLES_VERSION)})


def to_table(table: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by column) as a table of the contract's schema; a missing or extra column raises."""
    target = schema(table)
    names = set(target.names)
    for row in rows:
        if set(row) != names:
            raise ValueError(f"{table} row columns {sorted(row)} differ from the contract {sorted(names)}")
    return pa.Table.from_pylist(rows, schema=target)


def read_table_file(fs, path: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file of ``table`` (on ``fs``, an fsspec filesystem) with the current columns (or ``columns`` of
    them), the ones an older tables version lacks as nulls."""
    target = schema(table)
    if columns is not None:
        target = pa.schema([target.field(c) for c in columns], metadata=target.metadata)
    present = set(pq.read_schema(path, filesystem=fs).names)
    data = pq.read_table(path, filesystem=fs, columns=[c for c in target.names if c in present])
    return pa.Table.from_arrays(
        [data.column(f.name) if f.name in present else pa.nulls(len(data), f.type) for f in target], schema=target
    )
