"""The accuracy study runs end to end (``--quick``: 3 images, 2 videos, random weights), resumes without redoing
anything, writes numbers that agree with the run folders, and its statistics helpers give exact known values."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from . import ROOT, run_script

RUNS = [("none", 1.0), ("evtp", 0.1), ("random", 0.1), ("evtp:alpha=0.5", 0.1)]


def study_module():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import study

    return study


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = run_script("study.py", "--quick", "--out", str(out / "runs"), "--results", str(out / "results"))
    report = json.loads((out / "results" / "study.json").read_text())
    return out, result.stdout, report


def intervals(node):
    """Every {value, low, high} dict in the report."""
    if isinstance(node, dict):
        if {"value", "low", "high"} <= set(node):
            yield node
        for child in node.values():
            yield from intervals(child)
    elif isinstance(node, list):
        for child in node:
            yield from intervals(child)


def test_quick_writes_every_section_and_plot(quick):
    out, stdout, report = quick
    assert set(report) == {"meta", "sets", "verdict"}
    assert set(report["sets"]) == {"refcoco", "revos"}
    for name, metrics in (("refcoco", {"gIoU", "cIoU"}), ("revos", {"J", "F", "J&F"})):
        result = report["sets"][name]
        assert set(result) == {"accuracy", "paired", "versus_none", "by_size", "coverage", "ablations"}
        assert [(r["method"], r["keep"]) for r in result["accuracy"]] == RUNS
        assert all(metrics <= set(r) for r in result["accuracy"])
        assert {(r["versus"], r["keep"]) for r in result["paired"]} == {("random", 0.1)}
        assert [r["method"] for r in result["ablations"]] == ["evtp", "evtp:alpha=0.5"]
        assert {r["radius"] for r in result["coverage"]} == {"feature_radius", "grid_radius"}
    assert report["meta"]["runs"]["missing"] == {"refcoco": [], "revos": []}
    assert report["meta"]["data"]["sets"]["refcoco"]["samples"] == 3
    assert report["meta"]["data"]["sets"]["revos"]["frames"] == 2
    for picture in ("study_keep.png", "study_speedup.png"):
        assert (out / "results" / picture).stat().st_size > 10_000
    assert "verdict" in stdout and "EVTP does not win" in stdout and "rho < 0 supports" in stdout


def test_every_interval_holds_its_value(quick):
    _, _, report = quick
    checked = 0
    for node in intervals(report["sets"]):
        if None not in (node["value"], node["low"], node["high"]):
            assert node["low"] - 1e-9 <= node["value"] <= node["high"] + 1e-9
            checked += 1
    assert checked > 20
    for result in report["sets"].values():
        for row in result["paired"] + result["versus_none"]:
            assert row["low"] - 1e-9 <= row["difference"] <= row["high"] + 1e-9
            assert 0 <= row["p_value"] <= 1


def test_numbers_agree_with_the_run_folders(quick):
    from pipeline.engine.report import image_summary
    from pipeline.results import load

    out, _, report = quick
    accuracy = {(r["method"], r["keep"]): r for r in report["sets"]["refcoco"]["accuracy"]}
    for method, keep in RUNS:
        folder = str(out / "runs" / "sweep-refcoco" / "tiny" / f"{method.replace(':', '-').replace('=', '')}-{keep}")
        metrics = load(folder, "metrics")
        row = accuracy[method, keep]
        assert row["expressions"] == len(metrics) == 6
        assert row["cIoU"]["value"] == pytest.approx(100 * metrics.intersection.sum() / metrics.union.sum())
        # LISA's gIoU divides by (n + 1e-5); the study by n.
        assert row["gIoU"]["value"] == pytest.approx(image_summary(metrics)[0]["gIoU"], rel=1e-5)
    videos = {(r["method"], r["keep"]): r for r in report["sets"]["revos"]["accuracy"]}
    folder = str(out / "runs" / "sweep-revos" / "tiny" / "evtp-0.1")
    metrics, tokens = load(folder, "metrics"), load(folder, "tokens")
    assert videos["evtp", 0.1]["J&F"]["value"] == pytest.approx(100 * metrics.jf.mean())
    assert videos["evtp", 0.1]["grid_radius"] == pytest.approx(tokens.grid_radius.mean(), rel=1e-6)


def test_size_bins_split_the_set_at_the_median(quick):
    out, _, report = quick
    for name, folder in (("refcoco", "refcoco-val-n3-e2/layout/refcoco"), ("revos", "revos-valid-n2-e2-t2/layout")):
        index = pd.DataFrame(json.loads((out / "runs" / "data" / folder / "synth_index.json").read_text()))
        sizes = report["sets"][name]["by_size"]
        assert sizes["threshold"] == pytest.approx(float(np.median(index.target_area_fraction)))
        small = int((index.target_area_fraction < sizes["threshold"]).sum())
        assert sizes["bins"]["small"]["expressions"] == small
        assert sizes["bins"]["small"]["expressions"] + sizes["bins"]["large"]["expressions"] == len(index)


def test_a_rerun_redoes_nothing(quick):
    from pipeline.results import load

    out, _, report = quick
    run_script("study.py", "--quick", "--out", str(out / "runs"), "--results", str(out / "rerun"))
    for name in ("refcoco", "revos"):
        for method, keep in RUNS:
            folder = out / "runs" / f"sweep-{name}" / "tiny" / f"{method.replace(':', '-').replace('=', '')}-{keep}"
            latest = load(str(folder), "runs").sort_values("started_at").iloc[-1]
            assert latest.shards_done == 0 and latest.shards_skipped == latest.shards_total
    again = json.loads((out / "rerun" / "study.json").read_text())
    assert again["sets"] == report["sets"]  # seeded bootstrap, same runs: the same numbers


# ------------------------------------------------------------------------------------------------ helpers


def test_pair_iou_is_lisas_per_pair_iou():
    study = study_module()
    iou = study.pair_iou(np.array([0, 5, 0, 3]), np.array([0, 10, 4, 3]))
    assert iou.tolist() == [1.0, 5 / (10 + 1e-5), 0.0, 3 / (3 + 1e-5)]


def table(values: list[float], groups: list[str]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            "sample_key": groups,
            "expression_id": [str(i) for i in range(n)],
            "iou": values,
            "intersection": [10 * v for v in values],
            "union": [10.0] * n,
        }
    )


def test_a_method_against_itself_differs_by_zero_with_p_one():
    study = study_module()
    t = table([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], ["a", "a", "b", "c", "d", "e"])
    for metric in (study.GIOU, study.CIOU):
        result = study.compare(t, t, metric, rounds=200, seed=0)
        assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
        assert result["p_value"] == 1.0 and not result["significant"]
        assert result["expressions"] == 6 and result["clusters"] == 5
        assert study.outcome(result) == "no significant difference"


def test_a_uniform_gain_is_significant_and_exact():
    study = study_module()
    base = table([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], ["a", "b", "c", "d", "e", "f"])
    better = base.assign(iou=base.iou + 0.05)
    result = study.compare(better, base, study.GIOU, rounds=200, seed=0)
    assert result["difference"] == pytest.approx(5.0)
    assert result["low"] == pytest.approx(5.0) and result["high"] == pytest.approx(5.0)
    assert result["p_value"] == 0.0 and result["significant"]
    assert study.outcome(result) == "EVTP better"
    assert study.outcome(study.compare(base, better, study.GIOU, rounds=200, seed=0)) == "EVTP worse"
    assert study.outcome({**result, "clusters": 2}).startswith("too few clusters")


def test_spearman_of_rank_correlated_columns_is_one():
    study = study_module()
    x = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    groups = ["a", "b", "c", "d", "e", "f"]
    rho = study.correlation(x, np.log(x) + 3, groups, rounds=200, seed=0)
    assert (rho["value"], rho["low"], rho["high"]) == pytest.approx((1.0, 1.0, 1.0))
    assert study.coverage_verdict(rho) == "contradicts (rho > 0)"
    rho = study.correlation(x, -x, groups, rounds=200, seed=0)
    assert rho["value"] == pytest.approx(-1.0)
    assert study.coverage_verdict(rho) == "supports (rho < 0)"
    flat = study.correlation(x, np.ones_like(x), groups, rounds=50, seed=0)
    assert np.isnan(flat["value"]) and study.coverage_verdict(flat).startswith("undefined")


def test_an_estimate_is_in_percent():
    study = study_module()
    t = table([0.2, 0.4, 0.6, 0.8], ["a", "a", "b", "c"])
    giou = study.estimate(t, study.GIOU, rounds=200, seed=0)
    ciou = study.estimate(t, study.CIOU, rounds=200, seed=0)
    assert giou["value"] == pytest.approx(50.0) and ciou["value"] == pytest.approx(50.0)
    assert giou["low"] <= 50.0 <= giou["high"]


def test_radii_are_the_expressions_own_rows_else_the_frames_mean():
    study = study_module()
    tokens = pd.DataFrame(
        {
            "sample_key": ["v", "v", "w", "w", "w", "w"],
            "frame_index": [0, 1, 0, 0, 1, 1],
            "expression_id": [None, None, "0", "1", "0", "1"],  # w: FastV, one row per expression and frame
            "feature_radius": np.array([1.0, 2.0, 3.0, 5.0, 4.0, 7.0], np.float32),
            "grid_radius": np.array([2.0, 4.0, 1.0, 1.0, 2.0, 3.0], np.float32),
        }
    )
    expressions = pd.DataFrame({"sample_key": ["v", "v", "w", "w"], "expression_id": ["0", "1", "0", "1"]})
    radii = study.expression_radii(tokens, expressions)
    assert radii.feature_radius.tolist() == [1.5, 1.5, 3.5, 6.0]
    assert radii.grid_radius.tolist() == [3.0, 3.0, 1.5, 2.0]


def test_size_threshold_and_run_folders():
    study = study_module()
    assert study.size_threshold(np.array([0.3, 0.1, 0.2, 0.4]), "median") == pytest.approx(0.25)
    assert study.size_threshold(np.array([0.3, 0.1]), "0.02") == 0.02
    # jobs/sweep.py's naming: options without ':' and '='.
    assert study.run_folder("runs/s/", "synth-hyperseg", "evtp:first=grid_center", 0.1) == (
        "runs/s/synth-hyperseg/evtp-firstgrid_center-0.1"
    )
    assert study.run_folder("runs/s", "tiny", "none", 1.0) == "runs/s/tiny/none-1.0"


def test_speedups_come_from_the_committed_flop_table():
    study = study_module()
    speedups = study.flop_speedups(study.FLOPS)
    assert speedups["before_llm"][1.0] == 1.0
    assert speedups["before_llm"][0.2] > speedups["before_llm"][0.5] > 1.0
    assert study.speedup(speedups, "none", 1.0) == 1.0
    assert study.speedup(speedups, "fastv:layer=1", 0.1) == speedups["fastv"][0.1]
    assert study.speedup(speedups, "evtp:alpha=2.0", 0.1) == speedups["before_llm"][0.1]
    assert study.speedup(speedups, "evtp", 0.3) is None
