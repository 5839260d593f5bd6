"""How long a driver takes to plan a resume, and how much memory it needs, with many shards committed: on the
local disk and on a local S3-compatible server (moto's, on 127.0.0.1: ``tests/s3/server.py``).

    python benchmarks/resume.py                                  # 1k/1k, 10k/10k, 100k/50k (total/committed)
    python benchmarks/resume.py --sizes 50:40 --out /tmp/r.json   # tiny: checks that it runs

For each size, a manifest of N shards (one key each, with the counts make_shards records; the tars are not
written, since planning reads only the manifest) and a run folder where M of them are committed (a ``_done``
marker and an attempt record each, as the engine writes them; on the server they are put straight into its
store, so the fill takes seconds). Then a driver process of its own times the steps ``run()`` takes before any
work starts: the lease (1 s of it the lease's settle time), the configuration check, ``plan`` (the manifest,
one listing of the markers, the pending shards longest first, repeated keys) and reading the ``runs`` table
(the driver lists no attempt records: each worker lists its own shard's); and its peak memory
(``ru_maxrss``). The server counts LIST requests (pages of at most 1,000 keys). Prints a table and writes
``benchmarks/results/resume.json``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "resume.json"
BUCKET = "bench"
RUN_ID = "20261204T000000-00000000"
CHUNK = 5000  # objects per server-side put


def manifest(shards: int) -> dict:
    entries = [
        {
            "uri": f"shard-{i:06d}.tar",
            "samples": 1,
            "bytes": 10240,
            "sha256": "0" * 64,
            "keys": [f"k{i:07d}"],
            "frames": 1 + i % 7,
            "expressions": 2,
            "expression_frames": 2 * (1 + i % 7),
        }
        for i in range(shards)
    ]
    return {"format": "evtp-ivs-shards", "schema_version": 1, "samples": shards, "shards": entries}


def files(folder_root: str, source: str, committed: int) -> dict[str, str]:
    """Marker and attempt record of the first ``committed`` shards, by path under the run folder's root."""
    from pipeline.engine.sink import ATTEMPTS, DONE, shard_id

    out = {}
    for i in range(committed):
        url = f"{source}/shard-{i:06d}.tar"
        name = shard_id(url)
        stats = {"shard": url, "shard_id": name, "run_id": RUN_ID, "attempt": 1, "failed": 0, "reason": ""}
        stats |= {k: 1 for k in ("samples", "processed", "expressions", "frames", "predictions")}
        out[f"{folder_root}/{DONE}/{name}.json"] = json.dumps(stats | {"errors": 0, "seconds": 1.0})
        record = {"shard_id": name, "run_id": RUN_ID, "host": "bench", "pid": 1, "started_at": "2026-12-04T00:00:00"}
        out[f"{folder_root}/{ATTEMPTS}/{name}/{RUN_ID}-00000000.json"] = json.dumps(record)
    return out


def fill(store: str, folder: str, source: str, total: int, committed: int, server) -> None:
    if store == "s3":
        prefix = f"s3://{BUCKET}/"
        key = folder[len(prefix) :]
        objects = {f"{source[len(prefix) :]}/manifest.json": json.dumps(manifest(total))}
        objects |= files(key, source, committed)
        items = list(objects.items())
        for start in range(0, len(items), CHUNK):
            server.put_objects(BUCKET, dict(items[start : start + CHUNK]))
        return
    Path(source).mkdir(parents=True, exist_ok=True)
    Path(source, "manifest.json").write_text(json.dumps(manifest(total)))
    for path, text in files(folder, source, committed).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def config_of(folder: str, source: str):
    from pipeline.config import DataConfig, ModelConfig, OutputConfig, RunConfig

    return RunConfig(data=DataConfig(f"{source}/manifest.json"), output=OutputConfig(folder), model=ModelConfig())


def resume(folder: str, source: str) -> dict:
    """The steps ``run()`` takes before work starts, each timed; the driver's peak memory after them."""
    from pipeline.engine.lease import Lease
    from pipeline.engine.run import FINGERPRINT_DEFAULTS, fingerprint, plan
    from pipeline.engine.sink import Sink
    from pipeline.results import load

    config = config_of(folder, source)
    times = {}
    begin = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal begin
        now = time.perf_counter()
        times[name] = now - begin
        begin = now

    with Lease(folder, "bench-resume"):
        lap("lease_s")
        sink = Sink(folder)
        sink.claim(fingerprint(config), defaults=FINGERPRINT_DEFAULTS)
        lap("claim_s")
        work = plan(config)
        lap("plan_s")
        load(folder, "runs")
        lap("runs_s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**times, "total_s": sum(times.values()), "pending": len(work.pending), "peak_rss_mb": rss}


def in_process(folder: str, source: str) -> dict:
    """``resume`` in a driver process of its own, so its time and peak memory are its alone."""
    command = [sys.executable, __file__, "--resume", folder, source]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def lists(requests: list[list[str]]) -> dict[str, int]:
    """LIST requests of the run folder: per folder listed (``_done``, ``_attempts``, ``runs``), and ``file`` for
    the one-key listings s3fs makes to tell a file from a folder (around each rename)."""
    out: dict[str, int] = {}
    for method, _, query in requests:
        asked = parse_qs(query)
        if method == "GET" and "list-type" in asked:
            below = asked.get("prefix", [""])[0].split("/")[2:]  # runs/<size>/...
            key = below[0] if below[:1] in (["_done"], ["_attempts"], ["runs"]) and below[1:] == [""] else "file"
            out[key] = out.get(key, 0) + 1
    return out


def measure(store: str, total: int, committed: int, scratch: Path, server) -> dict:
    name = f"n{total}-{committed}"
    if store == "s3":
        folder, source = f"s3://{BUCKET}/runs/{name}", f"s3://{BUCKET}/shards/{name}"
    else:
        folder, source = str(scratch / "runs" / name), str(scratch / "shards" / name)
    made = time.perf_counter()
    fill(store, folder, source, total, committed, server)
    made = time.perf_counter() - made
    in_process(folder, source)  # the first writes the configuration; the second is the resume measured
    if server is not None:
        server.reset_requests()
    row = {"store": store, "shards": total, "committed": committed, "fill_s": round(made, 1)}
    row |= in_process(folder, source)
    if server is not None:
        row["lists"] = lists(server.requests())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000:1000,10000:10000,100000:50000", help="TOTAL:COMMITTED, ...")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--resume", nargs=2, metavar=("FOLDER", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume:  # the timed driver (in_process)
        print(json.dumps(resume(*args.resume)))
        return 0
    sizes = [tuple(int(n) for n in size.split(":")) for size in args.sizes.split(",")]
    from tests.s3.server import S3Server

    server = S3Server()
    os.environ.update(server.environment())
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for total, committed in sizes:
                for store in ("local", "s3"):
                    rows.append(measure(store, total, committed, Path(scratch), server if store == "s3" else None))
                    r = rows[-1]
                    print(f"{store:5} {total:>7,} shards, {committed:>7,} committed: {r['total_s']:.2f} s, "
                          f"peak {r['peak_rss_mb']:.0f} MB {r.get('lists', '')}", flush=True)  # fmt: skip
    finally:
        server.close()
    print()
    header = "store  shards  committed  lease  claim   plan  runs  total (s)  peak RSS (MB)  LIST requests"
    print(header)
    for r in rows:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(r.get("lists", {}).items())) or "-"
        print(
            f"{r['store']:5}  {r['shards']:>6,}  {r['committed']:>9,}  {r['lease_s']:5.2f}  {r['claim_s']:5.2f}  "
            f"{r['plan_s']:5.2f}  {r['runs_s']:4.2f}  {r['total_s']:9.2f}  "
            f"{r['peak_rss_mb']:13.0f}  {listed}"
        )
    result = {
        "benchmark": "resume planning: the steps run() takes before work starts (benchmarks/resume.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "s3": "moto server on 127.0.0.1 (tests/s3/server.py), s3fs",
        "goal": "under 60 s and 2 GB at 100,000 shards with 50,000 committed (issue 16)",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
