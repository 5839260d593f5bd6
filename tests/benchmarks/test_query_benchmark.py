"""The query benchmark runs end to end on a small run folder, on disk and on the local S3 server (times not
asserted): the same answers before and after compaction, from fewer files."""

import json

from . import run_script


def test_benchmark_asks_the_three_questions_before_and_after_compaction(tmp_path):
    out = tmp_path / "query.json"
    run_script("query.py", "--files", "60", "--s3-files", "24", "--repeat", "1", "--pool", "32", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["store"], r["shards"], r["predictions"], r["files_before"], r["files_after"]) for r in rows] == [
        ("local", 60, 60_000, 60, 1),
        ("s3", 24, 24_000, 24, 1),
    ]
    for r in rows:
        assert r["before"]["split_metrics"]["rows"] == r["shards"] // 4 * 25  # one split in four, 25 rows a shard
        assert r["before"]["one_sample"]["rows"] == 5 * 40  # 5 expressions x 40 frames
        assert 0.05 * r["predictions"] < r["before"]["above_score"]["rows"] < 0.15 * r["predictions"]
        for name, before in r["before"].items():  # the script checks the answers agree; here that they were kept
            assert (before["rows"], before["check"]) == (r["after"][name]["rows"], r["after"][name]["check"])
        assert r["one_sample_pixels"] > 0 and r["compact_s"] > 0
