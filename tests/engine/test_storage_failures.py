"""Storage that fails is not bad data: a shard that cannot be read, or whose tables cannot be written, is tried
again with backoff, then left uncommitted and named in ``runs.failed_shards``; the job exits 1, and the same
command finishes the work with every sample exactly once."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import pseudo_label  # noqa: E402

from pipeline.data import reader, write_shards  # noqa: E402
from pipeline.engine.sink import Sink  # noqa: E402
from pipeline.results import load  # noqa: E402
from tests.samples import image_sample  # noqa: E402

SHARDS, PER_SHARD = 4, 2


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shards([image_sample(i) for i in range(SHARDS * PER_SHARD)], str(folder), max_samples=PER_SHARD)
    return folder / "manifest.json"


def failing_open(monkeypatch, victim: str, error: OSError, times: int | None) -> list[int]:
    """``fsspec.open`` of the reader fails for ``victim`` (``times`` times, or always) with ``error``."""
    calls = [0]
    original = reader.fsspec.open

    def patched(url, *args, **kwargs):
        if str(url).endswith(victim):
            calls[0] += 1
            if times is None or calls[0] <= times:
                raise error
        return original(url, *args, **kwargs)

    monkeypatch.setattr(reader.fsspec, "open", patched)
    return calls


def job(manifest: Path, out: Path, *extra: str) -> int:
    args = ["--shards", str(manifest), "--output", str(out), "--no-ray", "--preset", "tiny", "--export", "none"]
    return pseudo_label.main([*args, "--io-backoff", "0.01", *extra])


def every_sample_once(out: Path) -> bool:
    predictions = load(str(out), "predictions")
    per_sample = predictions.groupby(["sample_key", "expression_id", "frame_index"]).size()
    keys = {image_sample(i).key for i in range(SHARDS * PER_SHARD)}
    return set(predictions.sample_key) == keys and (per_sample == 1).all()


def test_a_dropped_connection_is_tried_again(manifest, tmp_path, monkeypatch):
    calls = failing_open(monkeypatch, "-00002.tar", ConnectionResetError(104, "Connection reset by peer"), times=2)
    assert job(manifest, tmp_path / "run") == 0
    assert calls[0] == 3 and every_sample_once(tmp_path / "run")
    assert len(load(str(tmp_path / "run"), "errors")) == 0


def test_a_shard_that_stays_unreadable_is_left_uncommitted_then_rerun(manifest, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = failing_open(monkeypatch, "-00001.tar", PermissionError(13, "Permission denied"), times=None)
    assert job(manifest, out, "--io-tries", "2") == 1
    assert calls[0] == 2
    assert "1 of 4 shards failed and were left uncommitted; run the same command again" in capsys.readouterr().err
    row = load(str(out), "runs").iloc[-1]
    victim = str(manifest.parent / "shard-00001.tar")
    assert list(row.failed_shards) == [victim] and "PermissionError" in row.failed_reasons[0]
    assert "shard-00001" not in Sink(str(out)).done() and len(load(str(out), "errors")) == 0
    monkeypatch.undo()  # the storage is back: the same command finishes the work
    assert job(manifest, out) == 0 and every_sample_once(out)


def test_a_failed_table_write_is_tried_again(manifest, tmp_path, monkeypatch):
    original, failures = Sink.write_table, [0]

    def flaky(self, table, name, data):
        if table == "predictions" and "00003" in name and failures[0] < 1:
            failures[0] += 1
            raise OSError(5, "Input/output error")
        return original(self, table, name, data)

    monkeypatch.setattr(Sink, "write_table", flaky)
    assert job(manifest, tmp_path / "run") == 0 and failures[0] == 1 and every_sample_once(tmp_path / "run")


def test_a_truncated_tar_stays_a_data_error(tmp_path):
    """Bytes that end mid-member are the data's fault: an errors row, the shard is committed (as before)."""
    folder = tmp_path / "shards"
    write_shards([image_sample(i) for i in range(2)], str(folder), max_samples=2)
    tar = next(folder.glob("*.tar"))
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 3])  # inside the first sample's members
    items = list(reader.read_shard(str(tar)))
    assert isinstance(items[-1], reader.ReadError) and items[-1].stage == "tar"
    with pytest.raises(reader.ShardUnreadable, match="FileNotFoundError"):
        list(reader.read_shard(str(tmp_path / "gone.tar")))


def test_a_model_that_cannot_load_is_tried_again_then_leaves_every_shard_for_the_next_run(
    manifest, tmp_path, monkeypatch, capsys
):
    from pipeline.engine import worker

    original, calls = worker.build_predictor, [0]

    def flaky(config, fail: int):
        calls[0] += 1
        if fail < 0 or calls[0] <= fail:
            raise OSError(5, "Input/output error reading model.safetensors")
        return original(config)

    monkeypatch.setattr(worker, "build_predictor", lambda config: flaky(config, 1))
    assert job(manifest, tmp_path / "once") == 0 and calls[0] == 2 and every_sample_once(tmp_path / "once")
    out, calls[0] = tmp_path / "run", 0
    monkeypatch.setattr(worker, "build_predictor", lambda config: flaky(config, -1))
    assert job(manifest, out, "--io-tries", "2") == 1 and calls[0] == 2
    assert "4 of 4 shards failed and were left uncommitted" in capsys.readouterr().err
    row = load(str(out), "runs").iloc[-1]
    assert len(row.failed_shards) == SHARDS and not Sink(str(out)).done() and Sink(str(out)).attempt_count() == 0
    reason = "the model could not load (OSError: [Errno 5] Input/output error reading model.safetensors"
    assert all(r.startswith(reason) for r in row.failed_reasons)
    monkeypatch.undo()
    assert job(manifest, out) == 0 and every_sample_once(out)


def test_a_marker_that_cannot_be_written_leaves_the_shard_for_the_next_run(manifest, tmp_path, monkeypatch):
    original, calls = Sink.commit, [0]

    def failing(self, shard, stats):
        if "00003" in shard:
            calls[0] += 1
            raise TimeoutError("write timed out")
        return original(self, shard, stats)

    monkeypatch.setattr(Sink, "commit", failing)
    out = tmp_path / "run"
    assert job(manifest, out, "--io-tries", "3") == 1 and calls[0] == 3
    row = load(str(out), "runs").iloc[-1]
    assert list(row.failed_reasons) == ["TimeoutError: write timed out"] and "00003" in row.failed_shards[0]
    assert len(Sink(str(out)).done()) == SHARDS - 1
    monkeypatch.undo()
    assert job(manifest, out) == 0 and every_sample_once(out)
