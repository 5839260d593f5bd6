"""How long a driver takes to plan a resume when most of a run is committed, on the local disk and on a local
S3-compatible server (moto's, on 127.0.0.1: ``tests/s3/server.py``), and how many requests it makes.

    python benchmarks/resume.py                          # 1,000 and 10,000 committed shards
    python benchmarks/resume.py --shards 50 --out /tmp/r.json   # tiny: checks that it runs

For each size, a manifest of N shards (one key each; the tars are not written, since planning reads only the
manifest) and a run folder in which all N are committed (a ``_done`` marker and an attempt record each, as the
engine writes them) are made; then, in a driver process of its own, ``plan`` (the manifest, one listing of the
markers, the pending shards, repeated keys) and the listing of the attempt records are timed apart, then the real
``run(config, use_ray=False)``, which with nothing pending is the whole resume path: the lease (1 s of it is the
lease's settle time), the configuration check, the plan, the attempt records, reading the ``runs`` table and
writing this run's row twice. The server counts the LIST requests (pages of at most 1,000 keys).
Prints a table and writes ``benchmarks/results/resume.json``.

Local moto is a stand-in: it answers in about a millisecond where a real store takes tens, so on S3 the listing
share would be larger (1,000 keys per LIST page), not the number of requests.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "resume.json"
BUCKET = "bench"
RUN_ID = "20261204T000000-00000000"


def manifest(shards: int) -> dict:
    entries = [
        {"uri": f"shard-{i:06d}.tar", "samples": 1, "bytes": 10240, "sha256": "0" * 64, "keys": [f"k{i:07d}"]}
        for i in range(shards)
    ]
    return {"format": "evtp-ivs-shards", "schema_version": 1, "samples": shards, "shards": entries}


def fill(folder: str, source: str, shards: int) -> None:
    """The manifest under ``source`` and N committed shards (marker + attempt record) under ``folder``."""
    import fsspec

    from pipeline.engine.sink import ATTEMPTS, DONE, shard_id

    fs, root = fsspec.core.url_to_fs(folder)
    sfs, sroot = fsspec.core.url_to_fs(source)
    sfs.makedirs(sroot, exist_ok=True)
    sfs.pipe_file(f"{sroot}/manifest.json", json.dumps(manifest(shards)).encode())
    files = {}
    for i in range(shards):
        url = f"{source}/shard-{i:06d}.tar"
        name = shard_id(url)
        stats = {"shard": url, "shard_id": name, "run_id": RUN_ID, "attempt": 1, "failed": 0, "reason": ""}
        stats |= {k: 1 for k in ("samples", "processed", "expressions", "frames", "predictions")}
        files[f"{root}/{DONE}/{name}.json"] = json.dumps(stats | {"errors": 0, "seconds": 1.0}).encode()
        record = {"shard_id": name, "run_id": RUN_ID, "host": "bench", "pid": 1, "started_at": "2026-12-04T00:00:00"}
        files[f"{root}/{ATTEMPTS}/{name}/{RUN_ID}-00000000.json"] = json.dumps(record).encode()
    if fs.protocol == "file" or "file" in fs.protocol:
        for path in {p.rsplit("/", 1)[0] for p in files}:
            os.makedirs(path, exist_ok=True)
    items = list(files.items())
    with ThreadPoolExecutor(16) as pool:  # object stores take many small writes best side by side
        list(pool.map(lambda item: fs.pipe_file(*item), items))


def resume(folder: str, source: str) -> dict:
    """Time ``run`` on a folder where every shard is committed; the driver's peak memory (ru_maxrss) after it."""
    from pipeline.config import DataConfig, ModelConfig, OutputConfig, RunConfig
    from pipeline.engine.run import run

    config = RunConfig(
        data=DataConfig(f"{source}/manifest.json"),
        output=OutputConfig(folder),
        model=ModelConfig(preset="tiny"),
    )
    from pipeline.engine.run import plan
    from pipeline.engine.sink import Sink

    phases = {}
    start = time.perf_counter()
    work = plan(config)  # the manifest, one listing of the markers, the pending shards, repeated keys
    phases["plan_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    Sink(folder).started()  # one listing of the attempt records: which pending shards an earlier run started
    phases["attempts_seconds"] = time.perf_counter() - start
    assert not work.pending and work.total > 0
    start = time.perf_counter()
    summary = run(config, use_ray=False)
    seconds = time.perf_counter() - start
    assert summary.shards_skipped == summary.shards_total and summary.shards_done == 0, summary
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, **phases, "peak_rss_mb": rss}


def in_process(folder: str, source: str) -> dict:
    """``resume`` in a driver process of its own, so its peak memory is the resume's alone."""
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
            below = asked.get("prefix", [""])[0].split("/")[2:]  # runs/n<shards>/...
            key = below[0] if below[:1] in (["_done"], ["_attempts"], ["runs"]) and below[1:] == [""] else "file"
            out[key] = out.get(key, 0) + 1
    return out


def measure(store: str, shards: int, scratch: Path, server) -> dict:
    if store == "s3":
        folder, source = f"s3://{BUCKET}/runs/n{shards}", f"s3://{BUCKET}/shards/n{shards}"
    else:
        folder, source = str(scratch / f"run-{shards}"), str(scratch / f"shards-{shards}")
    made = time.perf_counter()
    fill(folder, source, shards)
    made = time.perf_counter() - made
    in_process(folder, source)  # the first run writes the configuration and its runs row; the second is timed
    if server is not None:
        server.reset_requests()
    timed = in_process(folder, source)  # (its request count includes the phases timed apart before the run)
    row = {"store": store, "committed_shards": shards, "fill_seconds": round(made, 1), **timed}
    if server is not None:
        requests = server.requests()
        row |= {"requests": len(requests), "lists": lists(requests)}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1000,10000", help="comma-separated committed shard counts")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--resume", nargs=2, metavar=("FOLDER", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume:  # the timed driver (in_process)
        print(json.dumps(resume(*args.resume)))
        return 0
    sizes = [int(s) for s in args.shards.split(",")]
    from tests.s3.server import S3Server

    server = S3Server()
    os.environ.update(server.environment())
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for shards in sizes:
                for store in ("local", "s3"):
                    rows.append(measure(store, shards, Path(scratch), server if store == "s3" else None))
                    r = rows[-1]
                    line = f"{store:5}  {shards:>7,} committed  {r['seconds']:7.2f} s  peak {r['peak_rss_mb']:.0f} MB"
                    print(line + (f"  LIST {r['lists']}" if "lists" in r else ""), flush=True)
    finally:
        server.close()
    print()
    print("store  committed shards  plan (s)  attempts (s)  whole resume (s)  driver peak RSS (MB)  LIST requests")
    for r in rows:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(r.get("lists", {}).items())) or "-"
        print(
            f"{r['store']:5}  {r['committed_shards']:>16,}  {r['plan_seconds']:>8.2f}  "
            f"{r['attempts_seconds']:>12.2f}  {r['seconds']:>16.2f}  {r['peak_rss_mb']:>20.0f}  {listed}"
        )
    result = {
        "benchmark": "resume planning with every shard committed (benchmarks/resume.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "s3": "moto server on 127.0.0.1 (tests/s3/server.py), s3fs",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
