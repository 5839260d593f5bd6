"""How fast a run's tables answer the usual questions at size, before and after ``jobs/compact.py``.

    python benchmarks/query.py            # 1,000 and 10,000 files, S3 at 1,000 -> results/query.json
    python benchmarks/query.py --files 100 --s3-files 50 --out /tmp/q.json      # small: checks that it runs

A run folder is written the way a run writes it (``Sink``: one Parquet file per table per shard, then the
``_done`` marker), with synthetic rows: per shard 5 videos x 5 expressions x 40 frames = 1,000 ``predictions``
rows and 25 ``metrics`` rows, at 10,000 shards 10M predictions. Masks are real COCO RLE strings of 720x1280
frames (ellipses of 10 to 300 px radius, about 550 characters at the median: a pool of them, each row's moved
sideways by a random number of columns, so the strings differ as real masks do and decode to the moved mask);
scores are uniform; sample keys are random (a shard's keys do not sort together, so a reader can skip row
groups by their key statistics only in a compacted part, which is sorted by key). The four splits take turns by
shard.

Three questions, each through ``pipeline.results.load`` with its ``columns=`` and ``filters=`` (listing the
markers included), repeated and reported as the median (min-max):
- ``split_metrics``: the mean J&F of one split (a quarter of the metrics rows);
- ``above_score``: every prediction with score > 0.9, without its mask (10% of the rows);
- ``one_sample``: one sample's masks (200 rows; decoding them to arrays is timed apart, the same on either layout).
Then the folder is compacted (``pipeline.engine.compact``, timed) and asked again. On the local S3-compatible
server (moto on 127.0.0.1, ``tests/s3/server.py``) the same at ``--s3-files``: the local folder is uploaded,
asked, compacted in place on the server and asked again. The page cache is warm (the files were just written).
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from machine import describe
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data import rle  # noqa: E402
from pipeline.engine.compact import compact  # noqa: E402
from pipeline.engine.sink import Sink  # noqa: E402
from pipeline.engine.tables import schema  # noqa: E402
from pipeline.results import decode_mask, load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "query.json"
BUCKET = "bench"
RUN_ID = "20261204T000000-00000000"
VIDEOS, EXPRESSIONS, FRAMES = 5, 5, 40  # per shard: 1,000 predictions, 25 metrics rows
SIZE = (720, 1280)
SPLITS = [("revos", "valid"), ("revos", "test"), ("mevis", "valid_u"), ("refytvos", "valid")]
NO_MASK = [c for c in schema("predictions").names if c != "mask_counts"]
SAMPLE_COLUMNS = ["expression_id", "frame_index", "mask_counts", "mask_height", "mask_width"]


def mask_pool(count: int, seed: int) -> list["Shiftable"]:
    """``count`` ellipses on 720x1280 frames, as RLE strings that ``Shiftable`` moves sideways."""
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[: SIZE[0], : SIZE[1]]
    pool = []
    for _ in tqdm(range(count), desc="masks", unit="mask"):
        (cy, cx), (ry, rx) = rng.uniform((0, 0), SIZE), rng.uniform(10, 300, 2)
        pool.append(Shiftable(rle.encode(((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1)["counts"]))
    return pool


def _token(value: int) -> str:
    """One run length as COCO's compressed RLE writes it (cocoapi maskApi.c ``rleToString``: 5-bit groups from
    the low end, a continuation bit, offset 48)."""
    out = []
    more = True
    while more:
        group = value & 0x1F
        value >>= 5
        more = value != -1 if group & 0x10 else value != 0
        out.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(out)


class Shiftable:
    """An RLE string that is cheap to move right by whole columns: in the column-major runs only the first run
    (zeros before the mask) and the last (zeros after it) change, so only their tokens are rewritten. Makes every
    row's mask a distinct string (as real masks are, which Parquet's dictionary encoding cannot fold) at a few
    microseconds a row."""

    def __init__(self, counts: str):
        runs = rle.runs(counts, "pool")
        self.first, self.last = runs[0], runs[-1]
        self.before_last = runs[-3] if len(runs) > 3 else None  # the last run is stored as a difference to it
        ends = [i + 1 for i, c in enumerate(counts) if not (ord(c) - 48) & 0x20]  # where each token ends
        self.middle = counts[ends[0] : ends[-2]]
        # Room on the right, in columns; none when the mask ends in ones (an even number of runs).
        self.room = (self.last - 1) // SIZE[0] if len(runs) % 2 == 1 and len(runs) > 3 else 0

    def shifted(self, columns: int) -> str:
        step = columns % (self.room + 1) * SIZE[0]
        last = self.last - step
        return _token(self.first + step) + self.middle + _token(last - self.before_last if self.before_last else last)


def shard_tables(index: int, pool: list[str], rng: np.random.Generator) -> dict[str, pa.Table]:
    """One shard's ``predictions`` and ``metrics`` tables (the contract's schemas)."""
    url = f"s3://corpus/shards/shard-{index:06d}.tar"
    dataset, split = SPLITS[index % len(SPLITS)]
    keys = [f"video-{k:08x}" for k in rng.integers(0, 2**32, VIDEOS)]
    n = VIDEOS * EXPRESSIONS * FRAMES
    key = np.repeat(keys, EXPRESSIONS * FRAMES)
    expression = np.tile(np.repeat([f"{e}" for e in range(EXPRESSIONS)], FRAMES), VIDEOS)
    frame = np.tile(np.arange(FRAMES, dtype=np.int32), VIDEOS * EXPRESSIONS)
    picks, shifts = rng.integers(0, len(pool), n), rng.integers(0, SIZE[1], n)
    masks = [pool[i].shifted(int(c)) for i, c in zip(picks, shifts, strict=True)]
    score = rng.random(n, dtype=np.float32)
    area = rng.integers(0, SIZE[0] * SIZE[1] // 4, n)
    predictions = {
        "run_id": [RUN_ID] * n,
        "shard": [url] * n,
        "sample_key": key,
        "expression_id": expression,
        "expression_text": [f"the object number {e}" for e in expression],
        "frame_index": frame,
        "frame_name": [f"{f:05d}" for f in frame],
        "mask_counts": masks,
        "mask_height": np.full(n, SIZE[0], np.int32),
        "mask_width": np.full(n, SIZE[1], np.int32),
        "score": score,
        "seg_score": np.sqrt(score),
        "mask_score": np.sqrt(score),
        "stability": rng.random(n, dtype=np.float32),
        "area": area,
        "area_fraction": (area / (SIZE[0] * SIZE[1])).astype(np.float32),
        "bbox": [[10, 20, 100, 200]] * n,
        "query": rng.integers(0, 100, n, dtype=np.int32),
        "method": ["evtp"] * n,
        "keep": np.full(n, 0.2),
        "k": np.full(n, 146, np.int32),
        "sequence_length": np.full(n, 180, np.int32),
    }
    m = VIDEOS * EXPRESSIONS
    j, f = rng.random(m), rng.random(m)
    metrics = {
        "run_id": [RUN_ID] * m,
        "shard": [url] * m,
        "sample_key": np.repeat(keys, EXPRESSIONS),
        "expression_id": np.tile([f"{e}" for e in range(EXPRESSIONS)], VIDEOS),
        "dataset": [dataset] * m,
        "split": [split] * m,
        "kind": ["referring"] * m,
        "frames": np.full(m, FRAMES, np.int32),
        "j": j,
        "f": f,
        "jf": (j + f) / 2,
        "a": np.full(m, np.nan),
        "r": np.full(m, np.nan),
        "convention": ["revos"] * m,
        "intersection": rng.integers(0, 10**6, m),
        "union": rng.integers(10**6, 2 * 10**6, m),
    }
    return {
        name: pa.Table.from_pydict({c: columns[c] for c in schema(name).names}, schema=schema(name))
        for name, columns in (("predictions", predictions), ("metrics", metrics))
    }


def write_run(folder: str, shards: int, pool: list[str], seed: int) -> dict:
    """A run folder of ``shards`` committed shards, written through the sink; returns a sample key asked for."""
    sink = Sink(folder)
    sink.claim({"benchmark": "query"})
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for index in tqdm(range(shards), desc=f"write {shards} shards", unit="shard"):
        tables = shard_tables(index, pool, rng)
        name = f"shard-{index:06d}"
        for table, data in tables.items():
            sink.write_table(table, name, data)
        sink.commit(name, {"shard": name, "run_id": RUN_ID, "predictions": len(tables["predictions"])})
        if index == shards // 2:
            key = tables["predictions"]["sample_key"][0].as_py()
    return {"key": key, "write_s": round(time.perf_counter() - started, 1), "bytes": folder_bytes(folder)}


def folder_bytes(folder: str) -> int:
    sink = Sink(folder)
    return sum(sink.fs.du(f"{sink.root}/{table}") for table in ("predictions", "metrics"))


def questions(folder: str, key: str) -> dict:
    """The three questions, each a callable returning (rows, a check value)."""

    def split_metrics():
        split = [("dataset", "==", "mevis"), ("split", "==", "valid_u")]
        rows = load(folder, "metrics", columns=["jf"], filters=split)
        return len(rows), math.fsum(rows.jf) / len(rows)  # fsum: the same in any row order

    def above_score():
        rows = load(folder, "predictions", columns=NO_MASK, filters=[("score", ">", 0.9)])
        return len(rows), float(rows.score.min())

    def one_sample():
        rows = load(folder, "predictions", columns=SAMPLE_COLUMNS, filters=[("sample_key", "==", key)])
        return len(rows), int(rows.mask_counts.str.len().sum())

    return {"split_metrics": split_metrics, "above_score": above_score, "one_sample": one_sample}


def ask(folder: str, key: str, repeat: int) -> dict:
    out = {}
    for name, question in questions(folder, key).items():
        times, answers = [], set()
        for _ in range(repeat):
            started = time.perf_counter()
            answers.add(question())
            times.append(time.perf_counter() - started)
        assert len(answers) == 1, f"{name} answered differently on repeats: {answers}"
        rows, check = answers.pop()
        out[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "rows": rows}
        out[name]["check"] = check
    return out


def files_in(folder: str, table: str) -> int:
    sink = Sink(folder)
    return len(sink.fs.glob(f"{sink.root}/{table}/*.parquet"))


def measure(store: str, folder: str, key: str, shards: int, repeat: int) -> dict:
    row = {"store": store, "shards": shards, "predictions": shards * VIDEOS * EXPRESSIONS * FRAMES}
    row["files_before"] = files_in(folder, "predictions")
    rows = load(folder, "predictions", columns=SAMPLE_COLUMNS, filters=[("sample_key", "==", key)])
    started = time.perf_counter()
    pixels = sum(int(decode_mask(r).sum()) for _, r in rows.iterrows())
    row["decode_one_sample_s"] = round(time.perf_counter() - started, 3)  # the same on either layout
    row["one_sample_pixels"] = pixels
    row["before"] = ask(folder, key, repeat)
    started = time.perf_counter()
    tables = compact(folder, progress=True)
    row["compact_s"] = round(time.perf_counter() - started, 1)
    row["bytes_after"] = sum(t.bytes_after for t in tables if t.table in ("predictions", "metrics"))
    row["files_after"] = files_in(folder, "predictions")
    row["after"] = ask(folder, key, repeat)
    for name, before in row["before"].items():
        after = row["after"][name]
        assert (before["rows"], before["check"]) == (after["rows"], after["check"]), f"{name} changed by compaction"
    print(table([row]), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["store  shards  predictions  files  question       before (s)            after (s)             speed-up"]
    for r in rows:
        for name in r["before"]:
            b, a = r["before"][name], r["after"][name]
            lines.append(
                f"{r['store']:5}  {r['shards']:>6,}  {r['predictions']:>11,}  {r['files_before']:>5}"
                f"  {name:13}  {_span(b):20}  {_span(a):20}  {b['median_s'] / a['median_s']:6.1f}x"
            )
        lines.append(
            f"{'':5}  compaction {r['compact_s']} s ({r['files_before']} -> {r['files_after']} files); decoding "
            f"the sample's {r['before']['one_sample']['rows']} masks {r['decode_one_sample_s']} s"
        )
    return "\n".join(lines)


def _span(t: dict) -> str:
    return f"{t['median_s']:.3f} ({t['min_s']:.3f}-{t['max_s']:.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="1000,10000", help="shards (files per table) to measure on disk, ...")
    parser.add_argument("--s3-files", type=int, default=1000, help="shards on the local S3 server (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pool", type=int, default=4096, help="distinct masks to draw from")
    parser.add_argument("--scratch", help="where the folders go (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    pool = mask_pool(args.pool, seed=0)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for shards in [int(n) for n in args.files.split(",")]:
            folder = f"{scratch}/run-{shards}"
            written = write_run(folder, shards, pool, seed=shards)
            rows.append({**measure("local", folder, written["key"], shards, args.repeat), **written})
            Sink(folder).fs.rm(folder, recursive=True)
        if args.s3_files:
            rows.append(on_s3(f"{scratch}/s3-{args.s3_files}", args.s3_files, pool, args.repeat))
    print()
    print(table(rows))
    result = {
        "benchmark": "querying a run's tables before and after compaction (benchmarks/query.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "data": f"per shard {VIDEOS} videos x {EXPRESSIONS} expressions x {FRAMES} frames; masks: RLE of "
        f"{SIZE[0]}x{SIZE[1]} ellipses, a pool of {args.pool}; random keys; page cache warm",
        "s3": "moto server on 127.0.0.1 (tests/s3/server.py), s3fs",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def on_s3(local: str, shards: int, pool: list[str], repeat: int) -> dict:
    """The run written locally, uploaded to the local S3 server, asked, compacted there and asked again."""
    from tests.s3.server import S3Server

    server = S3Server()
    os.environ.update(server.environment())
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        written = write_run(local, shards, pool, seed=shards)
        folder = f"s3://{BUCKET}/run-{shards}"
        started = time.perf_counter()
        fs.put(local.rstrip("/") + "/", folder, recursive=True)
        written["upload_s"] = round(time.perf_counter() - started, 1)
        return {**measure("s3", folder, written["key"], shards, repeat), **written}
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
