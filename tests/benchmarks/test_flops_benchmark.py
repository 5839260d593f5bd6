"""The FLOP benchmark runs end to end on the tiny preset and its rows are consistent (no numbers are asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "flops.py"
KEEPS = [1.0, 0.5, 0.2, 0.1, 0.05]
N = 729  # the tiny preset keeps the real 27 x 27 SigLIP grid
STAGES = ["siglip", "selection", "projector", "swin", "pixel_decoder", "fvp", "llm", "decoder"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("flops") / "flops.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())


def test_prints_a_table_with_a_column_per_stage(report):
    stdout, _ = report
    header = next(line for line in stdout.splitlines() if line.lstrip().startswith("keep"))
    for column in ("siglip", "select", "proj", "swin", "pixdec", "fvp", "llm", "decoder", "total", "speedup"):
        assert column in header.split()
    assert "grid_sample" in stdout and "video" in stdout


def test_rows_are_the_requested_keeps_with_the_budget_k(report):
    _, data = report
    rows = data["rows"]
    assert [r["keep"] for r in rows] == KEEPS
    assert [r["k"] for r in rows] == [729, 364, 146, 73, 36]  # max(1, round(keep * 729)), half to even
    assert data["meta"]["preset"] == "tiny" and data["meta"]["stages"] == STAGES


def test_totals_are_the_sum_of_the_stages(report):
    for r in report[1]["rows"]:
        assert list(r["flops"]) == STAGES
        assert all(isinstance(f, int) and f >= 0 for f in r["flops"].values())
        assert r["total_flops"] == sum(r["flops"].values())
        assert r["total_tflops"] == pytest.approx(sum(r["tflops"].values()), rel=1e-12)
        assert r["llm_share"] == pytest.approx(r["flops"]["llm"] / r["total_flops"])


def test_llm_cost_and_sequence_fall_with_the_kept_tokens(report):
    rows = report[1]["rows"]
    full = rows[0]
    llm = [r["flops"]["llm"] for r in rows]
    assert all(a > b for a, b in zip(llm, llm[1:], strict=False))
    for r in rows:
        assert full["sequence_length"] - r["sequence_length"] == N - r["k"]
        assert r["speedup_vs_keep1"] == pytest.approx(full["total_flops"] / r["total_flops"])
        assert r["llm_speedup_vs_keep1"] == pytest.approx(full["flops"]["llm"] / r["flops"]["llm"])
    assert full["speedup_vs_keep1"] == 1.0 and all(r["speedup_vs_keep1"] > 1.0 for r in rows[1:])


def test_stages_that_do_not_see_the_kept_tokens_cost_the_same_at_every_keep(report):
    rows = report[1]["rows"]
    for stage in ("siglip", "swin", "pixel_decoder", "fvp", "decoder"):
        assert rows[0]["flops"][stage] > 0
        assert {r["flops"][stage] for r in rows} == {rows[0]["flops"][stage]}
    assert rows[0]["flops"]["selection"] == 0  # keep 1 selects nothing
    assert all(r["flops"]["selection"] > 0 for r in rows[1:])


def test_meta_records_the_assumptions(report):
    meta = report[1]["meta"]
    layout = meta["sequence_layout"]
    assert report[1]["rows"][0]["sequence_length"] == layout["text"] + N + layout["temporal"] + layout["refer"] + 100
    assert {"torch", "transformers", "shapes", "notes"} <= set(meta)
    assert meta["shapes"]["siglip_features"][1] == N


def test_flop_counts_on_meta_equal_an_eager_cpu_run_on_real_data():
    """The benchmark's premise: counts depend on shapes only, so meta tensors without a mask count the real run.

    The CPU reference is eager attention: FlopCounterMode has no formula for SDPA's fused CPU kernel and counts it
    as 0, while on meta SDPA takes the math path, whose matmuls it counts.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.model.config import preset
    from pipeline.model.hyperseg import HyperSeg

    def flops(fn) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    config = preset("tiny")
    torch.manual_seed(0)
    cpu = HyperSeg(config, attn_implementation="eager").eval()
    with torch.device("meta"):
        meta = HyperSeg(config)
    meta = meta.to("meta").requires_grad_(False).eval()
    length, hidden = 300, config.llm.hidden_size
    mask = torch.ones(1, length, dtype=torch.long)
    mask[0, -1] = 0  # the released run masks the final <|endoftext|> key
    on_cpu = flops(lambda: cpu.llm(inputs_embeds=torch.randn(1, length, hidden), attention_mask=mask))
    on_meta = flops(lambda: meta.llm(inputs_embeds=torch.empty(1, length, hidden, device="meta")))
    assert on_cpu == on_meta > 0
    side, canvas = config.preprocess.siglip_size, config.preprocess.canvas
    on_cpu = flops(lambda: cpu.encode_vision(torch.randn(1, 3, side, side)))
    on_meta = flops(lambda: meta.encode_vision(torch.empty(1, 3, side, side, device="meta")))
    assert on_cpu == on_meta > 0
    on_cpu = flops(lambda: cpu.pixel_decoder(cpu.encode_swin(torch.randn(1, 3, canvas, canvas))))
    on_meta = flops(lambda: meta.pixel_decoder(meta.encode_swin(torch.empty(1, 3, canvas, canvas, device="meta"))))
    assert on_cpu == on_meta > 0
