"""The decode-throughput benchmark runs end to end on a tiny size and writes its rows (speed is not asserted)."""

import json

from . import run_script


def test_benchmark_writes_a_row_per_kind(tmp_path):
    out = tmp_path / "data.json"
    args = ["--images", "3", "--videos", "1", "--frames", "3", "--width", "64", "--height", "48", "--repeats", "1"]
    result = run_script("data.py", *args, "--out", str(out))
    assert "frames/s per core for JPEG frames" in result.stdout and "met" in result.stdout
    report = json.loads(out.read_text())
    rows = {r["kind"]: r for r in report["rows"]}
    assert set(rows) == {"image", "frames", "mp4", "rle", "jpeg-in-memory"}
    expected_items = {"image": 3, "frames": 3, "mp4": 3, "rle": 2 * 3, "jpeg-in-memory": 6}
    for kind, r in rows.items():
        assert r["items"] == expected_items[kind], kind
        assert r["seconds_median"] > 0 and r["per_second"] == r["items"] / r["seconds_median"]
        has_target = kind in ("image", "frames")
        assert (r["target_per_second"] == 150.0) if has_target else r["target_per_second"] is None
        assert r["met"] == (r["per_second"] >= 150.0) if has_target else r["met"] is None
    assert report["meta"]["width"] == 64 and report["meta"]["height"] == 48 and report["meta"]["jpeg_quality"] == 90
