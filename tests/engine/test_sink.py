"""Output integrity: an interrupted write leaves nothing half-written in view; committed shards are the truth."""

import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.engine import sink as sink_module
from pipeline.engine.sink import Sink
from pipeline.engine.tables import to_table
from pipeline.results import load


def errors_rows(n: int, shard: str = "s") -> list[dict]:
    return [
        {"run_id": "r", "shard": shard, "sample_key": f"k{i}", "stage": "model", "error_type": "E", "message": "m"}
        for i in range(n)
    ]


def test_a_write_that_fails_halfway_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    sink = Sink(str(tmp_path))
    sink.write_table("errors", "first", to_table("errors", errors_rows(3)))

    def half_then_die(table, f):
        f.write(b"PAR1" + b"\0" * 1000)  # the start of a Parquet file, never finished
        raise KeyboardInterrupt

    monkeypatch.setattr(sink_module.pq, "write_table", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        sink.write_table("errors", "second", to_table("errors", errors_rows(5)))
    assert sorted(p.name for p in (tmp_path / "errors").iterdir()) == ["first.parquet"]
    assert len(pd.read_parquet(tmp_path / "errors")) == 3


WRITER = """
import sys
import numpy as np
import pyarrow as pa
from pipeline.engine.sink import Sink
table = pa.table({"x": np.arange(3_000_000), "y": np.full(3_000_000, 0.5)})
sink = Sink(sys.argv[1])
for i in range(1000):
    sink.write_table("big", f"part-{i:04d}", table)
    print(i, flush=True)
"""


def test_a_writer_killed_at_any_moment_leaves_only_complete_files(tmp_path):
    """SIGKILL a process in the middle of writing 48 MB Parquet files: what pandas sees is whole files only."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    process.stdout.readline()
    start = time.monotonic()
    process.stdout.readline()  # a file takes this long to write
    time.sleep((time.monotonic() - start) / 2)  # so now the third is half written
    process.send_signal(signal.SIGKILL)
    process.wait()
    files = sorted((tmp_path / "big").iterdir())
    assert any(p.name.startswith(".") for p in files), "killed between files: the test saw no partial write"
    complete = [p for p in files if not p.name.startswith(".")]
    frame = pd.read_parquet(tmp_path / "big")
    assert len(frame) == 3_000_000 * len(complete) and frame.x.iloc[-1] == 2_999_999


def test_load_shows_committed_shards_only(tmp_path):
    sink = Sink(str(tmp_path))
    sink.write_table("errors", "a", to_table("errors", errors_rows(2, "a")))
    sink.commit("a", {"run_id": "r"})
    sink.write_table("errors", "b", to_table("errors", errors_rows(3, "b")))  # a run died before committing b
    assert list(load(str(tmp_path), "errors").shard.unique()) == ["a"]
    assert len(load(str(tmp_path), "errors", committed_only=False)) == 5


def test_attempts_are_counted_per_run(tmp_path):
    sink = Sink(str(tmp_path))
    assert sink.begin("s", "run-1") == 1
    assert sink.begin("s", "run-1") == 2
    assert sink.begin("s", "run-2") == 1 and sink.begin("t", "run-2") == 1
    records = sink.attempts("s")
    assert [r["run_id"] for r in records].count("run-1") == 2 and all(r["pid"] > 0 for r in records)
    sink.forget("s")
    assert sink.attempts("s") == [] and len(sink.attempts()) == 1


def test_no_temporary_file_outlives_a_write(tmp_path):
    sink = Sink(str(tmp_path))
    sink.write_table("errors", "a", pa.table({"x": [1]}))
    sink.commit("a", {})
    hidden = [p for p in tmp_path.rglob(".*")]
    assert hidden == []


def test_load_reads_a_folder_of_an_older_tables_version(tmp_path):
    """A version-3 predictions file (before the quality signals) reads with those columns as nulls."""
    current = to_table("predictions", [])
    added = ["expression_text", "seg_score", "mask_score", "stability", "area", "area_fraction", "bbox"]
    old_schema = pa.schema([f for f in current.schema if f.name not in added])
    row = {
        "run_id": "r", "shard": "a", "sample_key": "k", "expression_id": "0", "frame_index": 0, "frame_name": "00000",
        "mask_counts": "04", "mask_height": 2, "mask_width": 2, "score": 0.5, "query": 3, "method": "none",
        "keep": 1.0, "k": 729, "sequence_length": 900,
    }  # fmt: skip
    sink = Sink(str(tmp_path))
    sink.write_table("predictions", "a", pa.Table.from_pylist([row], schema=old_schema))
    sink.commit("a", {})
    frame = load(str(tmp_path), "predictions")
    assert list(frame.columns) == current.schema.names
    assert frame.loc[0, "score"] == 0.5 and frame.loc[0, "query"] == 3
    assert frame[added].isna().all().all()


def test_load_reads_only_the_columns_and_rows_asked_for(tmp_path):
    def row(shard: str, key: str, score: float) -> dict:
        return {
            "run_id": "r", "shard": shard, "sample_key": key, "expression_id": "0", "expression_text": "a cat",
            "frame_index": 0, "frame_name": "00000", "mask_counts": "04", "mask_height": 2, "mask_width": 2,
            "score": score, "seg_score": score, "mask_score": 1.0, "stability": 1.0, "area": 1, "area_fraction": 0.25,
            "bbox": [0, 0, 1, 1], "query": 3, "method": "none", "keep": 1.0, "k": 729, "sequence_length": 900,
        }  # fmt: skip

    sink = Sink(str(tmp_path))
    for shard, rows in {"a": [("k1", 0.9), ("k2", 0.2)], "b": [("k3", 0.7)], "c": [("k4", 0.95)]}.items():
        sink.write_table("predictions", shard, to_table("predictions", [row(shard, *r) for r in rows]))
        if shard != "c":  # c is written but never committed: not read
            sink.commit(shard, {})
    frame = load(str(tmp_path), "predictions", columns=["sample_key", "score"], filters=[("score", ">", 0.5)])
    assert list(frame.columns) == ["sample_key", "score"]
    assert frame.sample_key.tolist() == ["k1", "k3"] and frame.score.tolist() == pytest.approx([0.9, 0.7])
    either = load(str(tmp_path), "predictions", columns=["sample_key"], filters=[[("shard", "==", "b")],
                                                                                 [("score", "<", 0.5)]])  # fmt: skip
    assert either.sample_key.tolist() == ["k2", "k3"]
    assert load(str(tmp_path), "predictions", committed_only=False, columns=["sample_key"]).sample_key.tolist() == [
        "k1", "k2", "k3", "k4"
    ]  # fmt: skip
    assert list(load(str(tmp_path / "nothing"), "predictions", columns=["score"]).columns) == ["score"]
    with pytest.raises(ValueError, match="predictions has no column scores"):
        load(str(tmp_path), "predictions", columns=["scores"])
