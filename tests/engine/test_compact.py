"""Compaction: fewer, larger files with the same rows, the ``_done`` contract kept through crashes and resumes."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.engine import compact as compact_module
from pipeline.engine.compact import COMPACTED, compact
from pipeline.engine.lease import Lease
from pipeline.engine.sink import Sink
from pipeline.engine.tables import to_table
from pipeline.results import load

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import compact as compact_job  # noqa: E402
import export_labels  # noqa: E402
import pseudo_label  # noqa: E402


def errors_rows(shard: str, n: int) -> list[dict]:
    return [
        {"run_id": "r", "shard": shard, "sample_key": f"{shard}/k{i}", "stage": "m", "error_type": "E", "message": ""}
        for i in range(n)
    ]


def folder(tmp_path: Path, shards: int, uncommitted: int = 0) -> Sink:
    """A run folder of ``shards`` committed shards (errors rows: 1, 2, ... per shard) and ``uncommitted`` more."""
    sink = Sink(str(tmp_path / "run"))
    sink.claim({"data": {"shards": "x"}})
    for i in range(shards + uncommitted):
        sink.write_table("errors", f"s{i:03d}", to_table("errors", errors_rows(f"s{i:03d}", 1 + i % 4)))
        if i < shards:
            sink.commit(f"s{i:03d}", {"shard": f"s{i:03d}"})
    return sink


def rows(run: str) -> pd.DataFrame:
    return load(run, "errors").sort_values("sample_key").reset_index(drop=True)


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_compaction_keeps_every_committed_row_once_in_fewer_files(tmp_path):
    sink = folder(tmp_path, 10, uncommitted=2)
    before = rows(sink.output)
    assert len(before) == sum(1 + i % 4 for i in range(10))
    tables = compact(sink.output, target_bytes=3 * (tmp_path / "run/errors/s000.parquet").stat().st_size)
    errors = next(t for t in tables if t.table == "errors")
    assert (errors.files_before, errors.files_after, errors.rows) == (10, 4, len(before))  # 3 + 3 + 3 + 1 files
    pd.testing.assert_frame_equal(rows(sink.output), before)
    left = names(tmp_path / "run/errors")
    assert [n for n in left if n.startswith("s")] == ["s010.parquet", "s011.parquet"]  # not committed: untouched
    assert len([n for n in left if n.startswith("compacted-")]) == 4 and not [n for n in left if n[0] in "._"]
    assert len(sink.done()) == 10  # the markers stay
    # pandas straight on the folder: the parts and the uncommitted files, nothing twice
    direct = pd.read_parquet(tmp_path / "run/errors")
    assert len(direct) == len(before) + 3 + 4 and direct.sample_key.is_unique


def test_shards_committed_later_are_read_and_compacted_by_the_next_compaction(tmp_path):
    sink = folder(tmp_path, 4, uncommitted=1)
    compact(sink.output)
    sink.commit("s004", {"shard": "s004"})
    assert len(rows(sink.output)) == 1 + 2 + 3 + 4 + 1
    second = compact(sink.output)
    assert next(t for t in second if t.table == "errors").files_before == 1
    assert len(list((tmp_path / "run" / COMPACTED).glob("*.json"))) == 2
    assert len(rows(sink.output)) == 11 and rows(sink.output).sample_key.is_unique
    assert compact(sink.output) == []  # nothing new


def test_a_compaction_that_dies_before_its_record_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    sink = folder(tmp_path, 6)
    before = rows(sink.output)

    def die(self, name, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sink, "put", die)
    with pytest.raises(KeyboardInterrupt):
        compact(sink.output)
    monkeypatch.undo()
    assert [n for n in names(tmp_path / "run/errors") if n.startswith("_compacted-")]  # written, not committed
    pd.testing.assert_frame_equal(rows(sink.output), before)
    compact(sink.output)
    pd.testing.assert_frame_equal(rows(sink.output), before)
    assert not [n for n in names(tmp_path / "run/errors") if n.startswith(("_", "s"))]


def test_a_compaction_that_dies_after_its_record_is_read_exactly_and_finished_next_time(tmp_path, monkeypatch):
    sink = folder(tmp_path, 6)
    before = rows(sink.output)
    calls = []

    def die_the_second_time(fs, root):
        calls.append(root)
        if len(calls) == 2:  # after the record: nothing removed, nothing renamed yet
            raise KeyboardInterrupt
        return finish(fs, root)

    finish = compact_module.finish
    monkeypatch.setattr(compact_module, "finish", die_the_second_time)
    with pytest.raises(KeyboardInterrupt):
        compact(sink.output)
    monkeypatch.undo()
    left = names(tmp_path / "run/errors")
    assert len([n for n in left if n.startswith("s")]) == 6 and [n for n in left if n.startswith("_compacted-")]
    pd.testing.assert_frame_equal(rows(sink.output), before)  # the record decides: each row once
    assert compact(sink.output) == []  # finishes the committed one; nothing new to merge
    assert not [n for n in names(tmp_path / "run/errors") if n.startswith(("_", "s"))]
    pd.testing.assert_frame_equal(rows(sink.output), before)


def test_a_part_named_by_a_record_that_is_gone_is_an_error_not_missing_rows(tmp_path):
    sink = folder(tmp_path, 3)
    compact(sink.output)
    next((tmp_path / "run/errors").glob("compacted-*.parquet")).unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        load(sink.output, "errors")


def test_a_compacted_shard_cannot_be_forgotten_alone(tmp_path):
    sink = folder(tmp_path, 3)
    compact(sink.output)
    with pytest.raises(ValueError, match="compacted"):
        sink.forget("s001")


def test_the_job_refuses_a_folder_that_is_not_a_run_or_is_in_use(tmp_path, capsys):
    assert compact_job.main(["--run", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0 and not (tmp_path / "nothing").exists()
    sink = folder(tmp_path, 2)
    with Lease(sink.output, "a-driver", settle=0):
        assert compact_job.main(["--run", sink.output, "--no-progress"]) == 2
    assert "in use by run a-driver" in capsys.readouterr().err
    assert len(names(tmp_path / "run/errors")) == 2  # untouched
    assert compact_job.main(["--run", sink.output, "--no-progress"]) == 0
    assert "errors" in capsys.readouterr().out and len(names(tmp_path / "run/errors")) == 1


def test_a_compacted_run_resumes_and_exports_as_before(tmp_path):
    """A real pseudo-labelling run: after compaction the same command has nothing to do, and the exports are the
    same bytes."""
    run = str(tmp_path / "run")
    assert pseudo_label.main(["--output", run, "--no-ray", "--min-score", "0"]) == 0

    def exported(tag: str) -> dict:
        out = tmp_path / tag
        for fmt in ("coco", "sav"):
            target = out / fmt / ("labels.json" if fmt == "coco" else "")
            assert export_labels.main(["--run", run, "--format", fmt, "--out", str(target), "--no-progress"]) == 0
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    predictions = load(run, "predictions")
    before = exported("before")
    shards = len(Sink(run).done())
    assert shards > 1 and compact_job.main(["--run", run, "--target-mb", "1", "--no-progress"]) == 0
    assert len(list(Path(run, "predictions").glob("*.parquet"))) == 1  # every shard in one part
    pd.testing.assert_frame_equal(load(run, "predictions"), predictions)
    assert exported("after") == before
    assert pseudo_label.main(["--output", run, "--no-ray", "--min-score", "0"]) == 0
    runs = load(run, "runs").sort_values("started_at")
    assert runs.iloc[-1].shards_skipped == shards and runs.iloc[-1].shards_done == 0
    pd.testing.assert_frame_equal(load(run, "predictions"), predictions)
    assert json.loads(next(Path(run, COMPACTED).glob("*.json")).read_text())["shards"] == sorted(Sink(run).done())


def test_a_part_is_sorted_by_sample_key_so_one_sample_is_one_row_group(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    sink = Sink(str(tmp_path / "run"))
    sink.claim({"data": {"shards": "x"}})
    for i in range(8):  # every shard's keys spread over the whole range
        rows = [{**r, "sample_key": f"k{(j * 8 + i) % 40:02d}"} for j, r in enumerate(errors_rows(f"s{i}", 5))]
        sink.write_table("errors", f"s{i}", to_table("errors", rows))
        sink.commit(f"s{i}", {"shard": f"s{i}"})
    monkeypatch.setattr(compact_module, "ROW_GROUP_BYTES", 1)  # a row group per row
    compact(sink.output)
    (part,) = (tmp_path / "run/errors").glob("compacted-*.parquet")
    meta = pq.ParquetFile(part).metadata
    column = meta.schema.names.index("sample_key")
    keys = [meta.row_group(g).column(column).statistics.min for g in range(meta.num_row_groups)]
    assert keys == sorted(keys) and len(keys) == 40
