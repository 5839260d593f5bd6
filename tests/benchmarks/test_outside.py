"""The outside check's own scenes: written in the RefCOCO layout, read back exactly by the project's converter, and
the script runs end to end through make_shards and eval_refcoco (its accuracy is not asserted here)."""

import json
import sys

import numpy as np

from pipeline.data import read_samples, write_shards
from pipeline.data.layouts import refcoco

from . import ROOT, run_script


def outside_module():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import outside

    return outside


def test_the_layout_reads_back_exactly(tmp_path):
    records = outside_module().write_layout(tmp_path, scenes=6, seed=3)
    write_shards(refcoco.convert(tmp_path, split="val"), str(tmp_path / "shards"))
    samples = list(read_samples(str(tmp_path / "shards" / "manifest.json")))
    assert len(samples) == 6
    read = [(s, e) for s in samples for e in s.expressions]
    assert [e.text for _, e in read] == [r["sentence"] for r in records]
    for (sample, expression), record in zip(read, records, strict=True):
        (target,) = expression.object_ids
        assert np.array_equal(sample.mask(target), record["mask"])
        assert 0 < record["chance"] < 1
    assert any(" on the " in r["sentence"] for r in outside_module().write_layout(tmp_path / "more", 40, seed=4))


def test_the_script_runs_the_real_jobs(tmp_path):
    run_script("outside.py", "--scenes", "2", "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"))
    report = json.loads((tmp_path / "results" / "outside.json").read_text())
    assert list(report["runs"]) == ["none:1.0", "evtp:0.2"]
    for row in (parts["all"] for parts in report["runs"].values()):
        assert row["expressions"] >= 2 and 0 < row["chance_giou"] < 1
        value, low, high = row["giou"]
        assert 0 <= low <= value <= high <= 1
