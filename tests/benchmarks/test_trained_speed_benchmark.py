"""The trained-weights speed benchmark runs end to end (``--quick``: tiny random weights, small loads) and its rows
are consistent (speed itself is not asserted)."""

import pytest

from . import run_quick


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_quick("trained_speed.py", tmp_path_factory.mktemp("trained_speed") / "trained_speed.json")["report"]


def test_every_load_has_the_release_baseline_and_each_keep(report):
    rows = report["rows"]
    for load in ("revos", "refcoco"):
        mine = [(r["keep"], r["shared"]) for r in rows if r["load"] == load]
        assert mine == [(1.0, False), (0.2, True), (0.1, True), (0.05, True)]


def test_ratios_are_against_the_baseline_and_counts_are_queries(report):
    for load in ("revos", "refcoco"):
        rows = [r for r in report["rows"] if r["load"] == load]
        base = rows[0]
        assert base["speedup"] == 1.0 and base["flops_speedup"] == 1.0
        for r in rows:
            assert r["speedup"] == pytest.approx(base["total"] / r["total"])
            assert r["flops_speedup"] == pytest.approx(base["flops"] / r["flops"])
            assert r["wall_over_flops"] == pytest.approx(r["speedup"] / r["flops_speedup"])
            assert sum(r["seconds"].values()) == pytest.approx(r["total"], rel=1e-6)
            scored = r["queries_scored"]
            assert 1 <= scored["median"] <= scored["p90"] <= scored["max"] <= 100
            assert scored["n"] > 0
