"""The export benchmark runs end to end on a tiny run and writes its rows (speed and memory are not asserted)."""

import json

from . import run_script


def test_benchmark_writes_a_row_per_format_and_size(tmp_path):
    out = tmp_path / "labels.json"
    result = run_script("labels.py", "--masks", "80", "--out", str(out))
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["format"], r["masks"]) for r in rows] == [
        (f, m) for m in (8, 24, 80) for f in ("coco", "labelstudio")
    ]  # three run sizes, every mask accepted by the default filters
    assert all(r["seconds"] > 0 and r["peak_mb"] > 0 and r["output_mb"] > 0 for r in rows)
    assert "masks/s" in result.stdout and report["meta"]["prompts_per_image"] == 4
    cost = report["signals"]
    assert 0 < cost["mask_quality_ms"] < cost["postprocess_ms"] and cost["geometry_ms"] > 0
