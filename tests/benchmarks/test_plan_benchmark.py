"""The planning table's script runs on the stated statistics (a small corpus) and gives --dry-run's numbers."""

import json

import pytest

from . import run_script


def test_planning_table_counts_the_stated_statistics(tmp_path):
    out = tmp_path / "plan.json"
    run_script("plan.py", "--corpus", "2500", "--out", str(out))
    result = json.loads(out.read_text())
    rows = {(r["input"], r["keep"]): r for r in result["rows"]}
    assert len(rows) == 8
    refcoco, mevis = rows[("RefCOCO val", 0.2)], rows[("MeViS valid_u", 1.0)]
    assert (refcoco["samples"], refcoco["frames"], refcoco["expressions"], refcoco["expression_frames"]) == (
        1500,
        1500,
        3811,
        3811,
    )
    assert (mevis["samples"], mevis["expressions"], mevis["shards"]) == (50, 793, 1)
    corpus = rows[("2,500-image corpus", 0.2)]
    assert (corpus["shards"], corpus["samples"], corpus["expression_frames"]) == (3, 2500, 12_500)  # 1,000 a shard
    for r in result["rows"]:
        total = r["frame_tflops"] * r["frames"] + r["expression_tflops"] * r["expression_frames"]
        assert r["pflops"] == pytest.approx(total / 1000) and r["gpu_hours"] == pytest.approx(total / 100 / 3600)
    for name in {r["input"] for r in result["rows"]}:
        assert rows[(name, 0.2)]["gpu_hours"] < rows[(name, 1.0)]["gpu_hours"]
        assert (rows[(name, 0.2)]["k"], rows[(name, 1.0)]["k"]) == (146, 729)
