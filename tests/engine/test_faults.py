"""Faults on a multi-node Ray cluster simulated on this machine (``ray.cluster_utils.Cluster``, 3 worker nodes,
hosted by ``cluster_host.py``).

Each case runs the real job command (``jobs/pseudo_label.py --address ...``) as the driver process, breaks
something mid-run, and checks the output against the input manifest: every (sample, expression) exactly
once, no errors, and a ``runs`` row that says what happened. The attempt records (``_attempts/``) name the
pid and node of every shard attempt, which is how the test finds the actor or node that is mid-shard; a
hook in the driver's workers holds one sample at a gate file, so that shard stays mid-flight until the
fault has been done (the fault can never lose a race with the shard finishing).
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.data import write_shards
from pipeline.engine.sink import Sink, shard_id
from pipeline.results import load
from tests.engine.test_loopback import off_loopback
from tests.samples import image_sample

REPO = Path(__file__).resolve().parents[2]
SHARDS, PER_SHARD = 8, 8
TIMEOUT = 600  # seconds for one driver; a healthy one takes about 30 here, a loaded machine over 300


class ClusterHost:
    """``cluster_host.py`` as a subprocess: the cluster's address, and nodes removed or added on request."""

    def __init__(self, workers: int = 3):
        command = [sys.executable, str(Path(__file__).with_name("cluster_host.py")), str(workers)]
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.address = self.process.stdout.readline().strip()
        assert self.address, "the cluster did not start"

    def ask(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        assert answer == "ok", f"{line}: {answer}"

    def close(self) -> None:
        try:
            self.ask("quit")
            self.process.wait(timeout=60)
        finally:
            self.process.kill()


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray.cluster_utils")
    host = ClusterHost(workers=3)
    assert off_loopback(host.process.pid) == {}, "a node of the simulated cluster listens beyond 127.0.0.1"
    yield host
    host.close()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    samples = [image_sample(i) for i in range(SHARDS * PER_SHARD)]
    write_shards(samples, str(root), max_samples=PER_SHARD)
    return root / "manifest.json"


def driver(cluster, manifest: Path, out: Path, log: Path, *, hook: tuple[str, str] | None = None, extra=()):
    """The job command as a driver process. ``hook=(key, action)``: in every Ray worker of this driver, the
    statement ``action`` runs when the sample ``key`` is reached (see ``HOOKED``)."""
    args = ["--shards", str(manifest), "--output", str(out), "--preset", "tiny", "--actors", "2", *extra]
    if hook is None:
        command = [sys.executable, "jobs/pseudo_label.py", *args, "--address", cluster.address]
    else:
        command = [sys.executable, "-c", HOOKED.format(key=hook[0], action=hook[1]), cluster.address, *args]
    return subprocess.Popen(command, cwd=REPO, stdout=log.open("a"), stderr=subprocess.STDOUT)


HOOKED = """
import os
import sys
import time

import ray


def wait_for_gate(path):
    while not os.path.exists(path):
        time.sleep(0.05)


def install():
    # In every Ray worker of this driver: what happens when the sample {key!r} is reached.
    from pipeline.engine import worker

    original = worker.ShardProcessor.sample_rows

    def sample_rows(self, url, sample, *args, **kwargs):
        if sample.key == {key!r}:
            {action}
        return original(self, url, sample, *args, **kwargs)

    worker.ShardProcessor.sample_rows = sample_rows


ray.init(address=sys.argv[1], runtime_env={{"worker_process_setup_hook": install}})
sys.path.insert(0, "jobs")
import pseudo_label

sys.exit(pseudo_label.main(sys.argv[2:]))
"""


def finish(process: subprocess.Popen, log: Path, expected: int = 0) -> None:
    try:
        code = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the driver hung; its log ends:\n{log.read_text()[-3000:]}") from None
    assert code == expected, f"the driver ended with {code}, not {expected}; its log ends:\n{log.read_text()[-3000:]}"


def wait_for(condition, process: subprocess.Popen, log: Path):
    """Poll ``condition()`` until it returns something truthy (while the driver runs)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f"the driver ended first ({process.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("timed out waiting")


def hold(manifest: Path, tmp_path: Path, shard: int = 3) -> tuple[tuple[str, str], Path, str]:
    """A hook that holds a sample in the middle of shard ``shard`` until a gate file exists, so the test knows
    a shard that is mid-flight and stays so until it opens the gate (no race with the shard finishing first).
    Returns (the hook, the gate, the shard's id in the attempt records)."""
    uri = json.loads(manifest.read_text())["shards"][shard]["uri"]
    gate = tmp_path / "gate"
    hook = (image_sample(shard * PER_SHARD + 2).key, f"wait_for_gate({str(gate)!r})")
    return hook, gate, shard_id(str(manifest.parent / uri))  # the URL the run reads it by, as failed_shards shows


def assert_exactly_once(out: Path, manifest: Path, missing: tuple[str, ...] = ()) -> None:
    """Every expression of every sample in the manifest (but for the shards ``missing``) has exactly one
    prediction; nothing else is there."""
    shards = json.loads(manifest.read_text())["shards"]
    expressions = {
        s.key: [e["id"] for e in s.meta["expressions"]] for s in map(image_sample, range(SHARDS * PER_SHARD))
    }
    keys = [k for shard in shards if shard["uri"] not in missing for k in shard["keys"]]
    expected = Counter((k, e) for k in keys for e in expressions[k])
    predictions = load(str(out), "predictions")
    assert Counter(zip(predictions.sample_key, predictions.expression_id, strict=True)) == expected
    assert Counter(load(str(out), "tokens").sample_key) == Counter(keys)
    assert Counter(zip(*[load(str(out), "metrics")[c] for c in ("sample_key", "expression_id")], strict=True)) == (
        expected
    )
    assert load(str(out), "errors").empty


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_actor_killed_mid_shard_is_retried(cluster, manifest, tmp_path):
    out, log = tmp_path / "out", tmp_path / "driver.log"
    hook, gate, shard = hold(manifest, tmp_path)
    process = driver(cluster, manifest, out, log, hook=hook)
    (victim,) = wait_for(lambda: Sink(str(out)).attempts(shard), process, log)  # mid-shard until the gate opens
    os.kill(victim["pid"], signal.SIGKILL)
    gate.touch()
    finish(process, log)
    assert_exactly_once(out, manifest)
    (row,) = load(str(out), "runs").itertuples()
    assert (row.status, row.shards_done, row.attempts, row.retries) == ("finished", SHARDS, SHARDS + 1, 1)
    assert Sink(str(out)).committed(victim["shard_id"])["attempt"] == 2
    assert len({a["pid"] for a in Sink(str(out)).attempts(victim["shard_id"])}) == 2  # a restarted actor


def test_a_node_removed_mid_run_loses_nothing(cluster, manifest, tmp_path):
    out, log = tmp_path / "out", tmp_path / "driver.log"
    hook, gate, shard = hold(manifest, tmp_path)
    process = driver(cluster, manifest, out, log, hook=hook)
    (victim,) = wait_for(lambda: Sink(str(out)).attempts(shard), process, log)  # mid-shard until the gate opens
    cluster.ask(f"remove {victim['node_id']}")
    # A worker outlives its killed raylet for a moment: were the gate opened now, it could still finish and commit
    # the shard, and the node's loss would cost nothing. The gate opens once the shard's worker is gone.
    deadline = time.monotonic() + 120
    while alive(victim["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(victim["pid"]), "the removed node's worker is still running after 120 s"
    gate.touch()
    try:
        finish(process, log)
    finally:
        cluster.ask("add")  # three worker nodes again for the next case
    assert_exactly_once(out, manifest)
    (row,) = load(str(out), "runs").itertuples()
    assert (row.status, row.shards_done) == ("finished", SHARDS) and row.retries >= 1
    retried = Sink(str(out)).attempts(victim["shard_id"])
    assert len(retried) >= 2 and retried[-1]["node_id"] != victim["node_id"]


def test_a_killed_driver_is_resumed_by_running_the_command_again(cluster, manifest, tmp_path):
    out, log = tmp_path / "out", tmp_path / "driver.log"
    hook, gate, shard = hold(manifest, tmp_path)  # the gate stays shut: this shard is never committed by the first run
    process = driver(cluster, manifest, out, log, hook=hook)
    wait_for(lambda: Sink(str(out)).done() and Sink(str(out)).attempts(shard), process, log)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Ray ends a dead driver's actors; wait for them, so the shards they held stay uncommitted.
    deadline = time.monotonic() + 60
    while any(alive(a["pid"]) for a in Sink(str(out)).attempts()) and time.monotonic() < deadline:
        time.sleep(0.1)
    sink = Sink(str(out))
    committed, started = sink.done(), {a["shard_id"] for a in sink.attempts()}
    (first,) = load(str(out), "runs").itertuples()
    assert first.status == "running" and 0 < len(committed) < SHARDS
    finish(driver(cluster, manifest, out, log), log)  # the same command again
    assert_exactly_once(out, manifest)
    runs = load(str(out), "runs").set_index("run_id")
    second = runs.drop(first.run_id).iloc[0]
    assert runs.loc[first.run_id, "status"] == "running"  # what the dead driver left, kept as the record
    assert second.status == "finished" and list(second.resumes) == [first.run_id]
    assert second.shards_skipped == len(committed) and second.shards_done == SHARDS - len(committed)
    assert second.shards_redone == len(started - committed) >= 1
    # Shards committed by the first run were not touched again.
    assert {s["run_id"] for s in sink.stats() if s["shard_id"] in committed} == {first.run_id}


def test_a_shard_whose_workers_keep_dying_is_given_up_and_the_rest_is_kept(cluster, manifest, tmp_path):
    out, log = tmp_path / "out", tmp_path / "driver.log"
    poisoned = 3
    hook = (image_sample(poisoned * PER_SHARD + 2).key, "os._exit(1)")  # the process dies, as by the OOM killer
    # A shard given up is left uncommitted and the job says so: exit 1, with the same command to retry it.
    finish(driver(cluster, manifest, out, log, hook=hook, extra=["--max-attempts", "2"]), log, expected=1)
    assert "1 of 8 shards failed and were left uncommitted; run the same command again" in log.read_text()
    shard = json.loads(manifest.read_text())["shards"][poisoned]["uri"]
    assert_exactly_once(out, manifest, missing=(shard,))
    (row,) = load(str(out), "runs").itertuples()
    assert row.status == "finished" and list(row.failed_shards) == [str(manifest.parent / shard)]
    assert (row.shards_done, row.attempts, row.retries) == (SHARDS - 1, SHARDS + 1, 2)
    assert list(row.failed_reasons) == ["2 attempts died"]
    assert "1 shard was left uncommitted (run again to retry them)" in log.read_text()
