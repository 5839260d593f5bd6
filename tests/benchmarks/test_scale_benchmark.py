"""The cluster simulation runs end to end on 2 nodes (speed and efficiency are not asserted)."""

from . import run_quick


def test_the_simulation_runs_every_case_and_loses_no_sample(tmp_path):
    result = run_quick("scale.py", tmp_path / "scale.json")
    report = result["report"]
    rows = report["rows"]
    assert [(r["workload"], r["order"], r["actors"]) for r in rows] == [
        ("revos-like", "longest first", 1),
        ("revos-like", "longest first", 2),
        ("revos-like", "shortest first (input order)", 2),
        ("image-corpus-like", "longest first", 2),
        ("revos-like", "longest first, 1 of 2 nodes removed", 2),
    ]
    assert all(r["exactly_once"] and r["failed_shards"] == 0 for r in rows)
    assert all(0 < r["efficiency"] <= 1 and 0 <= r["tail_share"] <= 1 for r in rows)
    assert rows[0]["actors_seen"] == 1 and rows[1]["actors_seen"] == 2
    assert report["cost_model"]["t_mask"] > 0 and "fault_cost" in report
    assert "losing the nodes cost" in result["stdout"]
