"""``--dry-run``: the plan's counts from the manifest, FLOPs from benchmarks/results/flops.json, nothing started."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import eval_revos  # noqa: E402

from pipeline.config import DataConfig, ModelConfig, OutputConfig, PruningConfig, RunConfig  # noqa: E402
from pipeline.engine.dryrun import FLOPS_PATH, estimate, per_unit_tflops  # noqa: E402

TABLES = json.loads(FLOPS_PATH.read_text())["tables"]
HYPERSEG = next(t for t in TABLES if t["meta"]["family"] == "HyperSeg")


def split(row: dict) -> tuple[float, float]:
    frame = sum(row["tflops"][s] for s in ("siglip", "selection", "projector", "swin", "pixel_decoder"))
    return frame, sum(row["tflops"][s] for s in ("fvp", "llm", "decoder"))


def test_per_frame_and_per_expression_flops_come_from_the_table():
    rows = {r["keep"]: r for r in HYPERSEG["rows"]}
    assert per_unit_tflops(HYPERSEG, 0.2, "evtp") == (146, *split(rows[0.2]))
    assert per_unit_tflops(HYPERSEG, 0.5, "none") == (729, *split(rows[1.0]))  # nothing pruned
    k, frame, expression = per_unit_tflops(HYPERSEG, 0.3, "evtp")  # between the 0.2 and 0.5 rows, linear in k
    t = (k - rows[0.2]["k"]) / (rows[0.5]["k"] - rows[0.2]["k"])
    assert k == 219 and 0 < t < 1
    assert expression == pytest.approx(split(rows[0.2])[1] + t * (split(rows[0.5])[1] - split(rows[0.2])[1]))
    fastv = rows[0.2]["variants"]["fastv"]["tflops"]
    assert per_unit_tflops(HYPERSEG, 0.2, "fastv")[2] == pytest.approx(fastv["fvp"] + fastv["llm"] + fastv["decoder"])


def test_the_dry_run_counts_the_manifest_and_starts_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        eval_revos.main(["--output", str(out), "--dry-run", "--gpu-tflops", "50"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    manifest = json.loads((out / "_fixture" / "shards" / "manifest.json").read_text())
    shards = manifest["shards"]
    frames, masks = sum(s["frames"] for s in shards), sum(s["expression_frames"] for s in shards)
    assert f"{'shards':26}{0:>14,}{len(shards):>14,}" in text and f"{'frames':26}{0:>14,}{frames:>14,}" in text
    assert "at 50 TFLOP/s sustained" in text and "evtp keep 0.2 (k = 146)" in text
    assert sorted(p.name for p in out.iterdir()) == ["_fixture"]  # no lease, no config, no tables
    config = RunConfig(
        data=DataConfig(str(out / "_fixture" / "shards" / "manifest.json")),
        output=OutputConfig(str(out)),
        model=ModelConfig(preset="tiny"),
        pruning=PruningConfig("evtp", 0.2),
    )
    e = estimate(config, gpu_tflops=50)
    frame, expression = split(next(r for r in HYPERSEG["rows"] if r["keep"] == 0.2))
    assert e.pending_pflops == pytest.approx((frame * frames + expression * masks) / 1000)
    assert e.gpu_hours == pytest.approx((frame * frames + expression * masks) / 50 / 3600)
    # After a run, everything is done and nothing is pending.
    assert eval_revos.main(["--output", str(out), "--no-ray", "--preset", "tiny"]) == 0
    e = estimate(config)
    assert e.shards == (len(shards), 0) and e.counts["frames"] == (frames, 0) and e.pending_pflops == 0
