"""One driver per run folder: the lease is taken, renewed and released; a second driver is refused naming the
holder; a lease whose holder is gone (no heartbeat for its timeout, or its process ended on this host) is taken
over and the takeover is recorded in ``runs``. The same on the local S3 server: tests/s3/test_s3.py."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import pseudo_label  # noqa: E402

from pipeline.data import write_shards  # noqa: E402
from pipeline.engine.lease import LEASE, Lease, LeaseHeld, LeaseLost  # noqa: E402
from pipeline.results import load  # noqa: E402
from tests.samples import image_sample  # noqa: E402


def holder(run_id: str, *, host: str | None = None, pid: int | None = None, age: float = 0.0, timeout=120.0) -> dict:
    beat = datetime.now(timezone.utc) - timedelta(seconds=age)
    return {
        "run_id": run_id,
        "host": host or socket.gethostname(),
        "pid": pid or os.getpid(),
        "heartbeat": beat.isoformat(timespec="milliseconds"),
        "timeout": timeout,
    }


def write_lease(folder: str, record: dict) -> None:
    Lease(folder, "writer").sink.put(LEASE, json.dumps(record).encode())


@pytest.fixture
def sleeper():
    """A live process of this host other than the test: the pid of a driver that is still working."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_lease_is_written_renewed_and_released(tmp_path):
    folder = str(tmp_path / "run")
    with Lease(folder, "run-a", timeout=0.4, settle=0) as lease:
        first = lease.read()
        assert {k: first[k] for k in ("run_id", "host", "pid", "timeout")} == {
            "run_id": "run-a",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "timeout": 0.4,
        }
        time.sleep(0.5)  # two renewals (every timeout / 4)
        assert lease.read()["heartbeat"] > first["heartbeat"]
        lease.check()
    assert not (tmp_path / "run" / LEASE).exists()


def test_a_second_driver_is_refused_with_the_holders_name(tmp_path, sleeper):
    folder = str(tmp_path / "run")
    write_lease(folder, holder("run-a", host="gpu-node-7", pid=sleeper, age=5))
    with pytest.raises(LeaseHeld) as refused:
        Lease(folder, "run-b", settle=0).acquire()
    assert "is in use by run run-a (host gpu-node-7, pid" in str(refused.value)
    assert "heartbeat 5 s ago" in str(refused.value)
    # A live holder on this host is refused too (its process exists).
    write_lease(folder, holder("run-a", pid=sleeper, age=5))
    with pytest.raises(LeaseHeld, match=f"pid {sleeper}"):
        Lease(folder, "run-b", settle=0).acquire()


def test_a_lease_without_heartbeat_past_its_timeout_is_taken_over(tmp_path):
    folder = str(tmp_path / "run")
    write_lease(folder, holder("run-a", host="gpu-node-7", pid=12345, age=300, timeout=120))
    with Lease(folder, "run-b", settle=0) as lease:
        assert lease.read()["run_id"] == "run-b"
        assert lease.taken_over["run_id"] == "run-a" and lease.taken_over["why"] == "no heartbeat for 300 s"


def test_a_lease_whose_process_is_gone_on_this_host_is_taken_over_at_once(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = str(tmp_path / "run")
    write_lease(folder, holder("run-a", pid=gone.pid, age=1))
    with Lease(folder, "run-b", settle=0) as lease:
        assert lease.taken_over["why"] == f"its process {gone.pid} on this host is gone"


def test_a_driver_whose_lease_was_taken_stops(tmp_path):
    folder = str(tmp_path / "run")
    with Lease(folder, "run-a", timeout=0.4, settle=0) as lease:
        write_lease(folder, holder("run-b", host="elsewhere", pid=1))  # it stalled; another driver took over
        deadline = time.monotonic() + 10
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost, match="taken over by run run-b"):
            lease.check()
    assert json.loads((tmp_path / "run" / LEASE).read_text())["run_id"] == "run-b"  # not released: not ours


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shards([image_sample(i) for i in range(4)], str(folder), max_samples=2)
    return folder / "manifest.json"


def job(manifest: Path, out: Path) -> list[str]:
    return ["--shards", str(manifest), "--output", str(out), "--no-ray", "--preset", "tiny", "--export", "none"]


def test_the_job_is_refused_in_one_line_while_another_driver_holds_the_folder(manifest, tmp_path, sleeper, capsys):
    out = tmp_path / "run"
    write_lease(str(out), holder("20261204T101010-abcd1234", pid=sleeper, age=2))
    with pytest.raises(SystemExit) as exit_info:
        pseudo_label.main(job(manifest, out))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert ": error: " in line
    assert f"is in use by run 20261204T101010-abcd1234 (host {socket.gethostname()}, pid {sleeper}" in line
    assert [p.name for p in out.iterdir()] == [LEASE]  # refused before anything was written


def test_the_job_takes_over_a_dead_drivers_lease_and_records_it(manifest, tmp_path):
    out = tmp_path / "run"
    write_lease(str(out), holder("20261204T101010-abcd1234", host="gpu-node-7", pid=4242, age=600))
    assert pseudo_label.main(job(manifest, out)) == 0
    (row,) = load(str(out), "runs").itertuples()
    assert row.lease_taken_over == "run 20261204T101010-abcd1234 (host gpu-node-7, pid 4242, no heartbeat for 600 s)"
    assert not (out / LEASE).exists()  # released at the end
    assert pseudo_label.main(job(manifest, out)) == 0  # a free folder: nothing taken over
    assert load(str(out), "runs").lease_taken_over.isna().sum() == 1
