"""The pruning benchmark runs end to end on a tiny size and writes its rows (speed is not asserted)."""

import json

from PIL import Image

from . import run_script


def test_benchmark_writes_a_row_per_method_and_keep(tmp_path):
    out = tmp_path / "pruning.json"
    args = ["--batch", "2", "--side", "6", "--dim", "8", "--repeats", "1", "--keeps", "0.1,0.5", "--out", str(out)]
    result = run_script("pruning.py", *args)
    assert "x Gram" in result.stdout and "target EVTP" in result.stdout
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert len(rows) == 8 * 2
    assert {r["method"] for r in rows} == {
        "evtp",
        "kcenter",
        "divprune",
        "random",
        "grid",
        "attention",
        "visionzip",
        "none",
    }
    for r in rows:
        assert {"method", "keep", "seconds_median", "gram_seconds_median", "ratio_to_gram"} <= set(r)
        assert r["seconds_median"] > 0 and r["ratio_to_gram"] == r["seconds_median"] / r["gram_seconds_median"]
        assert r["k"] == (36 if r["method"] == "none" else {0.1: 4, 0.5: 18}[r["keep"]])
    assert report["meta"]["tokens"] == 36
    with Image.open(tmp_path / "pruning_tokens.png") as picture:
        assert picture.width > 6 * 6 * 14  # the frame and five methods side by side
