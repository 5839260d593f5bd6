"""The trained-weights speed benchmark runs end to end (``--quick``: tiny random weights, small loads) and its rows
are consistent (speed itself is not asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "trained_speed.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained_speed") / "trained_speed.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


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
