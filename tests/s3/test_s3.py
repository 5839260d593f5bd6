"""Object storage for real: every job against a local S3-compatible server (moto's, on 127.0.0.1, ``server.py``)
through s3fs, with faults injected at the server: a connection cut mid-read, failed PUTs, a driver killed
between a shard's tables and its marker. Each ends, after the same command is run again, with every sample's
rows exactly once."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "jobs"))
import eval_refcoco  # noqa: E402
import eval_revos  # noqa: E402
import export_labels  # noqa: E402
import make_shards  # noqa: E402
import pseudo_label  # noqa: E402

from pipeline.data import shard_urls, write_shards  # noqa: E402
from pipeline.engine.lease import LEASE, Lease, LeaseHeld  # noqa: E402
from pipeline.engine.sink import Sink, shard_id  # noqa: E402
from pipeline.results import load  # noqa: E402
from pipeline.synth.write import write_refcoco, write_revos  # noqa: E402
from tests.s3.server import S3Server  # noqa: E402
from tests.samples import image_sample  # noqa: E402

BUCKET = "evtp"
SHARDS, PER_SHARD = 4, 2


@pytest.fixture(scope="module")
def s3():
    """The server, with this process's botocore (and every subprocess's) pointed at it, and one bucket."""
    import s3fs

    server = S3Server()
    saved = dict(os.environ)
    # Two tries per request in botocore (not its default five with backoff), so an injected fault reaches the
    # pipeline's own retries in seconds.
    os.environ.update(server.environment(), AWS_MAX_ATTEMPTS="2")
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    yield server
    os.environ.clear()
    os.environ.update(saved)
    s3fs.S3FileSystem.clear_instance_cache()
    server.close()


@pytest.fixture(scope="module")
def images(s3) -> str:
    """Eight image samples in four shards, written straight to the bucket."""
    url = f"s3://{BUCKET}/images"
    write_shards([image_sample(i) for i in range(SHARDS * PER_SHARD)], url, max_samples=PER_SHARD)
    return url


def label(shards: str, out: str, *extra: str) -> list[str]:
    return ["--shards", shards, "--output", out, "--no-ray", "--preset", "tiny", "--io-backoff", "0.05", *extra]


def exactly_once(out: str, keys: set[str]) -> None:
    """Every sample's predictions once per (expression, frame); no errors."""
    predictions = load(out, "predictions")
    per_row = Counter(zip(predictions.sample_key, predictions.expression_id, predictions.frame_index, strict=True))
    assert set(predictions.sample_key) == keys
    assert set(per_row.values()) == {1}
    assert Counter(load(out, "tokens").sample_key) == Counter({k: 1 for k in keys})
    assert load(out, "errors").empty


IMAGE_KEYS = {image_sample(i).key for i in range(SHARDS * PER_SHARD)}


def listings(server: S3Server, folder: str) -> int:
    """How many LIST requests the server answered for prefixes under ``folder`` (bucket-relative)."""
    count = 0
    for method, path, query in server.requests():
        asked = parse_qs(query)
        if method == "GET" and path.strip("/") == BUCKET and "list-type" in asked:
            count += asked.get("prefix", [""])[0].startswith(folder)
    return count


def test_make_shards_every_job_and_resume_on_s3(s3, tmp_path):
    write_revos(tmp_path / "revos", split="valid", count=2, frames=3)
    write_refcoco(tmp_path / "refer", split="val", count=3)
    revos, refcoco = f"s3://{BUCKET}/shards/revos", f"s3://{BUCKET}/shards/refcoco"
    assert make_shards.main(["--format", "revos", "--root", str(tmp_path / "revos"), "--out", revos]) == 0
    assert make_shards.main(["--format", "refcoco", "--root", str(tmp_path / "refer"), "--split", "val",
                             "--out", refcoco, "--max-samples", "2"]) == 0  # fmt: skip
    assert len(shard_urls(refcoco)) == 2 and shard_urls(revos)[0].startswith(f"s3://{BUCKET}/shards/revos/")
    runs = f"s3://{BUCKET}/runs"
    assert eval_revos.main(["--shards", revos, "--output", f"{runs}/revos", "--no-ray", "--preset", "tiny"]) == 0
    assert eval_refcoco.main(["--shards", refcoco, "--output", f"{runs}/refcoco", "--no-ray", "--preset", "tiny"]) == 0
    assert len(load(f"{runs}/revos", "metrics")) > 0 and len(load(f"{runs}/refcoco", "metrics")) > 0
    labels = f"{runs}/labels"
    assert pseudo_label.main([*label(refcoco, labels), "--export", "coco,sav", "--min-score", "0"]) == 0
    coco = json.loads(Sink(labels).fs.cat(f"{BUCKET}/runs/labels/exports/coco.json"))
    assert len(coco["annotations"]) == len(load(labels, "predictions"))
    out = f"s3://{BUCKET}/exports/labelstudio"
    assert export_labels.main(["--run", labels, "--format", "labelstudio", "--out", out, "--min-score", "0"]) == 0
    assert Sink(out).fs.exists(f"{BUCKET}/exports/labelstudio")
    # Resume: the same command again skips every committed shard and lists the markers once.
    before = len(load(labels, "predictions"))
    s3.reset_requests()
    assert pseudo_label.main([*label(refcoco, labels), "--export", "none"]) == 0
    assert listings(s3, "runs/labels/_done") == 1
    assert listings(s3, "runs/labels/_attempts") == 0  # with nothing pending, no attempt record is needed
    latest = load(labels, "runs").sort_values("started_at").iloc[-1]
    assert (latest.shards_skipped, latest.shards_done) == (2, 0)
    assert len(load(labels, "predictions")) == before
    assert not Sink(labels).fs.exists(f"{BUCKET}/runs/labels/{LEASE}")  # released


def test_a_connection_cut_mid_read_is_retried_then_left_for_the_next_run(s3, images):
    out = f"s3://{BUCKET}/runs/cut"
    victim = f"/{BUCKET}/images/shard-00001.tar"
    s3.faults({"method": "GET", "path": victim, "action": "drop", "times": 1})
    assert pseudo_label.main(label(images, out, "--export", "none")) == 0  # once: s3fs or our retry reads it
    assert s3.clear() == [1]
    exactly_once(out, IMAGE_KEYS)
    out = f"s3://{BUCKET}/runs/cut-always"
    s3.faults({"method": "GET", "path": victim, "action": "drop"})
    assert pseudo_label.main(label(images, out, "--export", "none", "--io-tries", "2")) == 1
    assert s3.clear()[0] >= 2
    (row,) = load(out, "runs").itertuples()
    assert list(row.failed_shards) == [f"s3://{BUCKET}/images/shard-00001.tar"]
    assert "ConnectionError" in row.failed_reasons[0] and "Not enough data" in row.failed_reasons[0]
    assert shard_id(row.failed_shards[0]) not in Sink(out).done()
    assert pseudo_label.main(label(images, out, "--export", "none")) == 0  # the same command
    exactly_once(out, IMAGE_KEYS)


def test_a_failed_put_of_a_table_leaves_the_shard_for_the_next_run(s3, images):
    out = f"s3://{BUCKET}/runs/put"
    s3.faults({"method": "PUT", "path": r"/runs/put/predictions/\.shard-00002-", "action": "error"})
    assert pseudo_label.main(label(images, out, "--export", "none", "--io-tries", "2")) == 1
    assert s3.clear()[0] >= 2
    (row,) = load(out, "runs").itertuples()
    assert [shard_id(s) for s in row.failed_shards] == [shard_id(f"s3://{BUCKET}/images/shard-00002.tar")]
    assert "injected fault" in row.failed_reasons[0]
    assert pseudo_label.main(label(images, out, "--export", "none")) == 0
    exactly_once(out, IMAGE_KEYS)


def test_a_driver_killed_between_a_shards_tables_and_its_marker(s3, images):
    out = f"s3://{BUCKET}/runs/killed"
    args = label(images, out, "--export", "none")
    # The driver waits for a line on stdin, so the fault (which needs its pid) is in place before it starts.
    code = "import sys; sys.stdin.readline(); sys.path.insert(0, 'jobs'); import pseudo_label; " + (
        "sys.exit(pseudo_label.main(sys.argv[1:]))"
    )
    driver = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdin=subprocess.PIPE, text=True)
    s3.faults({"method": "PUT", "path": r"/runs/killed/_done/\.shard-00001-", "action": "kill", "pid": driver.pid})
    driver.communicate("go\n", timeout=600)
    assert driver.returncode == -9 and s3.clear() == [1]
    victim = shard_id(f"s3://{BUCKET}/images/shard-00001.tar")
    sink = Sink(out)
    assert sink.fs.exists(f"{sink.root}/predictions/{victim}.parquet")  # its tables were written...
    assert victim not in sink.done() and len(sink.done()) == 1  # ...its marker was not
    assert set(load(out, "predictions").sample_key) == {image_sample(i).key for i in range(PER_SHARD)}
    assert pseudo_label.main(args) == 0  # the same command
    exactly_once(out, IMAGE_KEYS)
    runs = load(out, "runs").sort_values("started_at")
    first, second = runs.iloc[0], runs.iloc[1]
    assert first.status == "running" and list(second.resumes) == [first.run_id]
    assert second.lease_taken_over.startswith(f"run {first.run_id} (host ")
    assert second.lease_taken_over.endswith(f"its process {driver.pid} on this host is gone)")
    assert (second.shards_skipped, second.shards_done, second.shards_redone) == (1, SHARDS - 1, 1)


def test_the_built_in_fixture_needs_a_local_output(s3, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pseudo_label.main(["--output", f"s3://{BUCKET}/runs/fixture", "--no-ray", "--preset", "tiny"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "the built-in fixture is written under a local output folder" in line


def test_the_lease_on_s3(s3):
    folder = f"s3://{BUCKET}/runs/lease"
    with Lease(folder, "run-a", settle=0):
        with pytest.raises(LeaseHeld, match=f"in use by run run-a \\(host .*, pid {os.getpid()}, heartbeat"):
            Lease(folder, "run-b", settle=0).acquire()
    stale = {"run_id": "run-c", "host": "gpu-node-7", "pid": 7, "heartbeat": "2026-01-01T00:00:00+00:00"}
    Sink(folder).put(LEASE, json.dumps(stale).encode())
    with Lease(folder, "run-d", settle=0) as lease:
        assert lease.taken_over["run_id"] == "run-c" and lease.read()["run_id"] == "run-d"
    assert Lease(folder, "any").read() is None


def test_ray_actors_read_and_write_s3(s3, images, tmp_path):
    """The driver starts a Ray of its own (``--address local``: not a cluster another test or benchmark left
    recorded on this machine); its actors inherit the endpoint from the driver's environment."""
    out = f"s3://{BUCKET}/runs/ray"
    log = tmp_path / "driver.log"
    extra = ("--export", "none", "--actors", "2", "--address", "local")
    command = [sys.executable, "jobs/pseudo_label.py", *label(images, out, *extra)]
    command.remove("--no-ray")
    with log.open("w") as stream:
        code = subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, timeout=900).returncode
    assert code == 0, log.read_text()[-3000:]
    exactly_once(out, IMAGE_KEYS)
    pids = {a["pid"] for a in Sink(out).attempts()}
    assert os.getpid() not in pids and len(pids) >= 1  # shards were written by actors, not this process
