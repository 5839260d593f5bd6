"""Compaction: a run's many per-shard files merged into a few large ones, with the ``_done`` contract kept.

A run writes one file per table per shard, so a 10,000-shard run has 10,000 files in each table and every query
opens each of them (``benchmarks/query.py`` measures what that costs). ``compact`` merges the committed shards'
files of each table into parts of about ``target_bytes``:

1. each table's parts are written under hidden names, ``{table}/_compacted-{token}-{i}.parquet``;
2. ``_compacted/{token}.json`` names the shards and the parts: the commit point. From then on
   ``results.table_files`` reads those shards' rows from the parts and ignores their per-shard files;
3. the per-shard files are removed, then the parts renamed to visible names. A direct
   ``pandas.read_parquet(folder/table)`` meanwhile may miss rows for a moment but never sees a row twice.

A crash anywhere leaves a folder that ``results.load`` reads exactly; compacting again finishes step 3 of a
committed record and removes the hidden parts of an uncommitted one. The ``_done`` markers stay, so a resumed
run skips compacted shards as before and commits new ones as per-shard files. It holds the folder's lease, so it
never runs beside a driver.
"""

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .preflight import ConfigError
from .sink import CONFIG, Sink
from .tables import TABLE_NAMES, read_table_file

logger = logging.getLogger(__name__)

COMPACTED = "_compacted"
TABLES = tuple(t for t in TABLE_NAMES if t != "runs")  # runs holds one file per run, not per shard
TARGET_BYTES = 256 << 20  # a part's size on disk: large enough that opening it costs little against reading it
ROW_GROUP_BYTES = 64 << 20  # in memory: a selective read skips whole row groups by their statistics


@dataclass
class Compacted:
    """What a folder's compaction records say: the shards they hold and each table's parts (visible names)."""

    shards: set[str] = field(default_factory=set)
    parts: dict[str, list[str]] = field(default_factory=dict)


def compacted(fs: fsspec.AbstractFileSystem, root: str) -> Compacted:
    """The folder's committed compactions: one listing of ``_compacted/`` and a read of each record."""
    folder = f"{root}/{COMPACTED}"
    fs.invalidate_cache(folder)
    out = Compacted()
    for path in sorted(fs.glob(f"{folder}/*.json")):
        if path.rsplit("/", 1)[-1].startswith("."):  # a record being written
            continue
        with fs.open(path, "r") as f:
            record = json.load(f)
        out.shards.update(record["shards"])
        for table, names in record["parts"].items():
            out.parts.setdefault(table, []).extend(names)
    return out


def part_paths(root: str, table: str, names: list[str], present: set[str]) -> list[str]:
    """Each part's path as it is now (visible, or hidden while step 3 has not reached it); ``present`` holds the
    table folder's file names. A part a record names that is gone is a damaged folder, not an empty one."""
    paths = []
    for name in names:
        for candidate in (f"{name}.parquet", f"_{name}.parquet"):
            if candidate in present:
                paths.append(f"{root}/{table}/{candidate}")
                break
        else:
            raise FileNotFoundError(f"{root}/{table}/{name}.parquet, named by a record in {COMPACTED}/, is missing")
    return paths


@dataclass
class TableCompaction:
    table: str
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rows: int = 0


def compact(output: str, *, target_bytes: int = TARGET_BYTES, progress: bool = True) -> list[TableCompaction]:
    """Merge the committed, not yet compacted shards' files of ``output`` (any fsspec URL) into parts; returns
    what changed per table (empty when there was nothing to merge). Hold the folder's lease around it."""
    sink = Sink(output)
    fs, root = sink.fs, sink.root
    if not fs.exists(f"{root}/{CONFIG}"):
        raise ConfigError(f"{output} is not a run folder (it has no {CONFIG})")
    state = finish(fs, root)
    shards = sorted(sink.done() - state.shards)
    if not shards:
        return []
    inputs = {table: _shard_files(fs, root, table, shards) for table in TABLES}
    token = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    bar = tqdm(total=sum(len(files) for files in inputs.values()), desc="compact", unit="file", disable=not progress)
    results, parts = [], {}
    for table, files in inputs.items():
        result = TableCompaction(table, len(files), bytes_before=sum(size for _, size in files))
        parts[table] = _write_parts(fs, root, table, token, files, target_bytes, result, bar)
        results.append(result)
    bar.close()
    record = {"token": token, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record |= {"shards": shards, "parts": parts}
    fs.makedirs(f"{root}/{COMPACTED}", exist_ok=True)
    sink.put(f"{COMPACTED}/{token}.json", json.dumps(record, sort_keys=True).encode())  # the commit point
    finish(fs, root)
    return results


def finish(fs: fsspec.AbstractFileSystem, root: str) -> Compacted:
    """Step 3 of every committed record (remove its shards' per-shard files, make its parts visible), and remove
    the hidden parts that no record names (a compaction that died before its commit point); returns the records'
    state."""
    state = compacted(fs, root)
    for table in TABLES:
        fs.invalidate_cache(f"{root}/{table}")
        present = {p.rsplit("/", 1)[-1]: p for p in fs.glob(f"{root}/{table}/*.parquet")}
        covered = [present[f"{shard}.parquet"] for shard in state.shards if f"{shard}.parquet" in present]
        if covered:
            fs.rm(covered)  # one request per thousand files on an object store
        named = set(state.parts.get(table, []))
        for file, path in present.items():
            stem = file[: -len(".parquet")]
            if stem.startswith("_compacted-"):
                if stem[1:] in named:
                    fs.mv(path, f"{root}/{table}/{stem[1:]}.parquet")
                else:
                    logger.warning("removing %s, left by a compaction that did not commit", path)
                    fs.rm(path)
    return state


def _shard_files(fs: fsspec.AbstractFileSystem, root: str, table: str, shards: list[str]) -> list[tuple[str, int]]:
    """(path, bytes) of each of ``shards``' files in ``table``, in ``shards``' order: one listing."""
    try:
        listed = fs.find(f"{root}/{table}", maxdepth=1, detail=True)
    except FileNotFoundError:
        return []
    by_name = {path.rsplit("/", 1)[-1]: (path, int(info["size"])) for path, info in listed.items()}
    return [by_name[f"{shard}.parquet"] for shard in shards if f"{shard}.parquet" in by_name]


def _write_parts(
    fs: fsspec.AbstractFileSystem,
    root: str,
    table: str,
    token: str,
    files: list[tuple[str, int]],
    target_bytes: int,
    result: TableCompaction,
    bar: tqdm,
) -> list[str]:
    """``files`` merged into hidden parts of about ``target_bytes`` each (by the inputs' sizes); their visible
    names. One part is in memory at a time."""
    names: list[str] = []
    group: list[pa.Table] = []
    taken = 0
    for index, (path, size) in enumerate(files):
        group.append(read_table_file(fs, path, table))
        taken += size
        bar.update()
        if taken >= target_bytes or index == len(files) - 1:
            names.append(f"compacted-{token}-{len(names):04d}")
            _write_part(fs, f"{root}/{table}/_{names[-1]}.parquet", pa.concat_tables(group), result)
            group, taken = [], 0
    result.files_after = len(names)
    return names


def _write_part(fs: fsspec.AbstractFileSystem, path: str, data: pa.Table, result: TableCompaction) -> None:
    """One part, its rows sorted by sample key: each row group then holds a narrow range of keys, so asking for
    one sample reads one row group's masks instead of every mask (a shard's files hold one row group each, and a
    run's keys seldom sort with its shards). The sort is stable: a sample's rows keep their order."""
    data = data.sort_by("sample_key")
    rows_per_group = max(1, math.ceil(len(data) * ROW_GROUP_BYTES / max(data.nbytes, 1)))
    with fs.open(path, "wb") as f:
        pq.write_table(data, f, row_group_size=rows_per_group)
    result.rows += len(data)
    result.bytes_after += fs.size(path)
