"""The speed benchmark runs end to end (``--quick``: tiny sizes), its rows add up, and its FLOP accounting of the
shared prefix is the work the predictor really does (speed itself is not asserted)."""

import sys

import pytest
import torch

from . import ROOT, run_quick

KEEPS = [1.0, 0.2, 0.1, 0.05]
FLOP_STAGES = ["siglip", "selection", "projector", "swin", "pixel_decoder", "fvp", "llm", "decoder"]
WALL_STAGES = ["siglip", "selection", "swin", "pixel_decoder", "fvp", "llm", "decoder", "postprocess", "other"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = run_quick("speed.py", tmp_path_factory.mktemp("speed") / "speed.json")
    return run["stdout"], run["report"]


def grid(rows: list[dict]) -> list[tuple]:
    return [(r["load"], r["keep"], r["shared"]) for r in rows]


def test_prints_the_three_parts_and_the_targets(report):
    stdout, data = report
    assert "FLOPs per expression and frame" in stdout and "CPU wall-clock" in stdout and "bare loop" in stdout
    assert set(data["targets"]) == {"flops_speedup", "wall_over_flops", "ray_over_bare", "model_stages_over_flops"}
    for target in data["targets"].values():
        assert target["met"] == (target["measured"] >= target["target"])


def test_flop_rows_cover_the_grid_and_sharing_divides_the_frame_work(report):
    _, data = report
    expressions = {load["name"]: load["expressions"] for load in data["meta"]["loads"]}
    expected = [(load, keep, shared) for load in ("revos", "refcoco") for keep in KEEPS for shared in (False, True)]
    for rows in (data["flops"], data["wall_flops"]):
        assert grid(rows) == expected
        by = {(r["load"], r["keep"], r["shared"]): r for r in rows}
        for load, keep, _ in expected[::2]:
            off, on, e = by[(load, keep, False)], by[(load, keep, True)], expressions[load]
            assert list(off["flops"]) == FLOP_STAGES
            assert sum(off["flops"].values()) == pytest.approx(off["total"])
            for stage in ("siglip", "selection", "projector", "swin", "pixel_decoder", "fvp"):
                assert on["flops"][stage] * e == pytest.approx(off["flops"][stage])  # once per frame, shared
            assert on["flops"]["decoder"] == off["flops"]["decoder"] > 0  # per expression either way
            assert off["llm_shared"] == 0 and on["llm_shared"] > 0
            assert on["flops"]["llm"] < off["flops"]["llm"] and on["total"] < off["total"]
        assert by[("revos", 1.0, False)]["speedup"] == by[("refcoco", 1.0, False)]["speedup"] == 1.0


def test_wall_rows_add_up(report):
    _, data = report
    rows = data["wall"]
    assert grid(rows) == grid(data["flops"])
    for r in rows:
        assert list(r["seconds"]) == WALL_STAGES
        assert all(r["seconds"][s] >= 0 for s in WALL_STAGES[:-1]) and r["total"] > 0
        assert r["wall_over_flops"] == pytest.approx(r["speedup"] / r["flops_speedup"])
        if r["keep"] == 1.0 and not r["shared"]:
            assert r["speedup"] == r["flops_speedup"] == 1.0


def test_engine_rows_are_the_same_work_both_ways(report):
    _, data = report
    engine = data["engine"]
    assert engine["expressions"] == engine["images"] * 2  # --quick asks 2 prompts of each image
    for mode in ("bare", "ray"):
        assert engine[mode]["seconds"] > 0 and engine[mode]["seconds_in_shards"] > 0
    assert engine["ray_over_bare"] == pytest.approx(engine["bare"]["seconds"] / engine["ray"]["seconds"])


def test_the_prefix_and_suffix_counts_are_what_the_shared_predictor_computes():
    """llm_pass(P) + llm_pass(S, past=P) on meta equals FlopCounterMode over the real shared LLM call
    (eager attention, whose matmuls are counted), and its linear layers equal the whole sequence's."""
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from flops import llm_pass, meta_model

    from pipeline.model import HyperSegPredictor, preset
    from pipeline.model.parts import llm as llm_module

    predictor = HyperSegPredictor.from_preset("tiny", attn_implementation="eager")
    image = torch.randint(0, 255, (40, 48, 3), dtype=torch.uint8).numpy()
    encoded = predictor.encode([image])
    calls = []
    shared = llm_module.run_llm_shared

    def counted(llm, sequences, owner, prefix, **options):
        with FlopCounterMode(display=False) as counter:
            out = shared(llm, sequences, owner, prefix, **options)
        calls.append((counter.get_total_flops(), prefix, len(sequences[0].embeds)))
        return out

    predictor_module = sys.modules["pipeline.model.hyperseg.predictor"]
    original = predictor_module.run_llm_shared
    predictor_module.run_llm_shared = counted
    try:
        predictor.segment(encoded, [["the red box"]])
    finally:
        predictor_module.run_llm_shared = original
    ((real, prefix, length),) = calls
    model = meta_model(preset("tiny"))
    assert llm_pass(model, prefix).flops + llm_pass(model, length - prefix, past=prefix).flops == real
    linear = [
        sum(n for op, n in c.by_op.items() if op in ("aten.addmm", "aten.mm"))
        for c in (llm_pass(model, prefix), llm_pass(model, length - prefix, prefix), llm_pass(model, length))
    ]
    assert linear[0] + linear[1] == linear[2]
