"""The jobs run end to end on their built-in fixtures (tiny preset, in-process) and write their reports."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import pseudo_label  # noqa: E402

from pipeline.engine.cli import format_table, keep_value  # noqa: E402
from pipeline.results import load  # noqa: E402


def test_pseudo_label_on_its_fixture(tmp_path, capsys):
    out = tmp_path / "labels"
    assert pseudo_label.main(["--output", str(out), "--no-ray", "--threshold", "0.0"]) == 0
    report = json.loads((out / "_report" / "pseudo_label.json").read_text())
    predictions = load(str(out), "predictions")
    assert sum(r["accepted"] for r in report["rows"]) == len(predictions) > 0  # threshold 0 keeps every mask
    assert {r["prompt"] for r in report["rows"]} == {"the red circle", "the object in the top left corner"}
    assert "masks kept" in capsys.readouterr().out


def test_keep_and_table_helpers():
    assert keep_value("0.2") == 0.2 and keep_value("64") == 64 and isinstance(keep_value("64"), int)
    text = format_table([{"a": 1, "b": 0.123456}, {"a": None, "b": 2.0}], ["a", "b"])
    assert text.splitlines() == ["a  b", "-  ------", "1  0.1235", "   2.0000"]
    with pytest.raises(ValueError):
        keep_value("x")


import eval_refcoco  # noqa: E402
import eval_revos  # noqa: E402
import sweep  # noqa: E402


def test_eval_revos_on_its_fixture_with_png_export(tmp_path, capsys):
    out, png = tmp_path / "revos", tmp_path / "png"
    assert eval_revos.main(["--output", str(out), "--no-ray", "--export-png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "revos    valid    overall" in text and "mevis    valid_u  all" in text
    report = json.loads((out / "_report" / "eval_revos.json").read_text())
    assert {(r["dataset"], r["category"]) for r in report["rows"]} == {
        ("revos", "referring"),
        ("revos", "reasoning"),
        ("revos", "overall"),
        ("mevis", "all"),
    }
    predictions = load(str(out), "predictions")
    pngs = sorted(png.glob("Annotations/**/*.png"))
    assert len(pngs) == len(predictions) > 0
    assert any("UVO" in str(p) for p in pngs)  # original ReVOS ids with slashes become folders again


def test_eval_refcoco_on_its_fixture(tmp_path, capsys):
    out = tmp_path / "refcoco"
    assert eval_refcoco.main(["--output", str(out), "--no-ray"]) == 0
    report = json.loads((out / "_report" / "eval_refcoco.json").read_text())
    assert {r["dataset"] for r in report["rows"]} == {"refcoco", "reasonseg"}
    metrics = load(str(out), "metrics")
    for row in report["rows"]:
        group = metrics[metrics.dataset == row["dataset"]]
        assert row["cIoU"] == pytest.approx(100 * group.intersection.sum() / (group.union.sum() + 1e-10), rel=1e-6)


def test_sweep_writes_one_table_and_a_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep.main(["--output", str(out), "--no-ray", "--methods", "evtp", "--keeps", "0.1"]) == 0
    report = json.loads((out / "_report" / "sweep.json").read_text())
    assert [(r["method"], r["keep"], r["k"]) for r in report["rows"]] == [("none", 1.0, 729), ("evtp", 0.1, 73)]
    assert (out / "_report" / "sweep.png").stat().st_size > 1000
