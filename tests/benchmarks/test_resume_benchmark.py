"""The resume benchmark runs end to end on a small plan, on disk and on the local S3 server (times not asserted)."""

import json

from . import run_script


def test_benchmark_times_each_step_of_a_resume_on_disk_and_on_s3(tmp_path):
    out = tmp_path / "resume.json"
    run_script("resume.py", "--sizes", "30:20", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["store"], r["shards"], r["committed"], r["pending"]) for r in rows] == [
        ("local", 30, 20, 10),
        ("s3", 30, 20, 10),
    ]
    for r in rows:
        steps = ("lease_s", "claim_s", "plan_s", "runs_s")
        assert r["total_s"] == sum(r[s] for s in steps) and r["lease_s"] >= 1.0  # the lease's settle time
        assert r["peak_rss_mb"] > 0
    assert rows[1]["lists"]["_done"] == 1 and "_attempts" not in rows[1]["lists"]  # markers once, attempts never
