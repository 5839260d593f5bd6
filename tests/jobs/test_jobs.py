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
