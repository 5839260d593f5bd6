"""The FLOP benchmark runs end to end on the tiny presets (HyperSeg and InstructSeg) and its rows are consistent;
the InstructSeg counts are the golden sequence's LLM, hand counts of the OVP and VMTF matmuls, and what
FlopCounterMode sees over the real predictors."""

import json
import sys

import pytest

from ..model.reference import REFERENCE
from . import ROOT, run_script

KEEPS = [1.0, 0.5, 0.2, 0.1, 0.05]
N = 729  # the tiny presets keep the real 27 x 27 SigLIP grid
STAGES = ["siglip", "selection", "projector", "swin", "pixel_decoder", "fvp", "llm", "decoder"]
INSTRUCTSEG_STAGES = ["siglip", "selection", "projector", "swin", "pixel_decoder", "ovp", "llm", "vmtf", "decoder"]
PER_KEEP = {"selection", "projector", "llm"}
GOLDEN = REFERENCE / "golden-tiny-instructseg"


def golden_layout(case: str) -> tuple[int, int, int]:
    """Text ids, <refer> ids and LLM length of the golden's sequence (its README, "LLM sequence")."""
    scalars = json.loads((GOLDEN / case / "scalars.json").read_text())
    text = scalars["seq_len_text_ids"] - len(scalars["placeholder_positions_in_input_ids"])
    # The masked final <|endoftext|> is the sequence's last position.
    length = max(scalars["llm_attention_mask_false_positions"]) + 1
    return text, len(scalars["token_refer_id"]), length


def benchmarks_on_path():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("flops") / "flops.json"
    (text, refer, _), (video_text, video_refer, _) = golden_layout("image"), golden_layout("video")
    result = run_script(
        "flops.py",
        *["--preset", "tiny", "instructseg-tiny", "--out", str(out)],
        *["--text-tokens", str(text), "--refer-tokens", str(refer)],
        *["--video-text-tokens", str(video_text), "--video-refer-tokens", str(video_refer)],
    )
    return result.stdout, json.loads(out.read_text())


def table(data: dict, preset: str, case: str) -> dict:
    (found,) = [t for t in data["tables"] if (t["meta"]["preset"], t["meta"]["case"]) == (preset, case)]
    return found


def test_one_table_per_hyperseg_preset_and_two_per_instructseg_one(report):
    _, data = report
    names = [(t["meta"]["preset"], t["meta"]["family"], t["meta"]["case"]) for t in data["tables"]]
    assert names == [
        ("tiny", "HyperSeg", "image"),
        ("instructseg-tiny", "InstructSeg", "image"),
        ("instructseg-tiny", "InstructSeg", "video"),
    ]
    assert [t["meta"]["stages"] for t in data["tables"]] == [STAGES, INSTRUCTSEG_STAGES, INSTRUCTSEG_STAGES]
    assert [t["meta"]["reference_frames"] for t in data["tables"]] == [0, 1, 4]


def test_prints_a_table_with_a_column_per_stage(report):
    stdout, _ = report
    headers = [line.split() for line in stdout.splitlines() if line.lstrip().startswith("keep") and "|" not in line]
    assert len(headers) == 3
    for column in ("siglip", "select", "proj", "swin", "pixdec", "fvp", "llm", "decoder", "total", "speedup"):
        assert column in headers[0]
    for header in headers[1:]:
        assert {"ovp", "vmtf", "llm", "decoder"} <= set(header) and "fvp" not in header
    assert "grid_sample" in stdout and "video" in stdout and "release" in stdout and "FastV" in stdout


def test_rows_are_the_requested_keeps_with_the_budget_k(report):
    _, data = report
    for t in data["tables"]:
        assert [r["keep"] for r in t["rows"]] == KEEPS
        assert [r["k"] for r in t["rows"]] == [729, 364, 146, 73, 36]  # max(1, round(keep * 729)), half to even
    assert data["meta"]["presets"] == ["tiny", "instructseg-tiny"]


def test_totals_are_the_sum_of_the_stages(report):
    for t in report[1]["tables"]:
        for r in t["rows"]:
            for counted in (r, *r["variants"].values()):
                assert list(counted["flops"]) == t["meta"]["stages"]
                assert all(isinstance(f, int) and f >= 0 for f in counted["flops"].values())
                assert counted["total_flops"] == sum(counted["flops"].values())
                assert counted["total_tflops"] == pytest.approx(sum(counted["tflops"].values()), rel=1e-12)
                assert counted["llm_share"] == pytest.approx(counted["flops"]["llm"] / counted["total_flops"])


def test_llm_cost_and_sequence_fall_with_the_kept_tokens(report):
    for t in report[1]["tables"]:
        rows = t["rows"]
        full = rows[0]
        llm = [r["flops"]["llm"] for r in rows]
        assert all(a > b for a, b in zip(llm, llm[1:], strict=False))
        for r in rows:
            assert full["sequence_length"] - r["sequence_length"] == N - r["k"]
            assert r["speedup_vs_keep1"] == pytest.approx(full["total_flops"] / r["total_flops"])
            assert r["llm_speedup_vs_keep1"] == pytest.approx(full["flops"]["llm"] / r["flops"]["llm"])
        assert full["speedup_vs_keep1"] == 1.0 and all(r["speedup_vs_keep1"] > 1.0 for r in rows[1:])


def test_pruning_the_key_frame_shrinks_only_selection_projector_and_llm(report):
    for t in report[1]["tables"]:
        rows = t["rows"]
        for stage in set(t["meta"]["stages"]) - PER_KEEP:
            assert rows[0]["flops"][stage] > 0
            assert {r["flops"][stage] for r in rows} == {rows[0]["flops"][stage]}
        projector = [r["flops"]["projector"] for r in rows]
        assert all(a > b for a, b in zip(projector, projector[1:], strict=False))
        assert rows[0]["flops"]["selection"] == 0  # keep 1 selects nothing
        assert all(r["flops"]["selection"] > 0 for r in rows[1:])


def test_meta_records_the_assumptions(report):
    data = report[1]
    assert {"torch", "transformers", "counter", "k_rule"} <= set(data["meta"])
    for t in data["tables"]:
        meta = t["meta"]
        layout = meta["sequence_layout"]
        length = layout["text"] + N + layout["temporal"] + layout["refer"] + layout["queries"]
        assert t["rows"][0]["sequence_length"] == length
        assert {"shapes", "notes", "sequence_layout_source", "ops_keep1"} <= set(meta)
        assert meta["shapes"]["siglip_features"][1] == N
        assert {"counted", "not_counted", "fastv", "llm"} <= set(meta["notes"])
    assert {"ovp", "vmtf", "release", "prune_references"} <= set(
        table(data, "instructseg-tiny", "video")["meta"]["notes"]
    )


def test_instructseg_llm_at_keep_1_is_the_golden_sequence(report):
    """1103 tokens for the image, 1505 for a video key frame (golden-tiny-instructseg README, "LLM sequence")."""
    benchmarks_on_path()
    from flops import llm_pass, meta_model

    from pipeline.model.config import preset

    model = meta_model(preset("instructseg-tiny"))
    for case, temporal in (("image", 128), ("video", 512)):
        _, _, length = golden_layout(case)
        t = table(report[1], "instructseg-tiny", case)
        full = t["rows"][0]
        assert full["sequence_length"] == length and t["meta"]["sequence_layout"]["temporal"] == temporal
        assert full["flops"]["llm"] == llm_pass(model, length).flops
    assert [golden_layout(c)[2] for c in ("image", "video")] == [1103, 1505]


def perceiver_flops(latents: int, media: int, keys_from_latents: int, dim: int, inner: int, ff: int) -> int:
    """One perceiver layer by hand: q, kv, out projections, Q K^T and attention x V, the feed-forward."""
    keys = media + keys_from_latents
    q, kv, out = 2 * latents * dim * inner, 2 * keys * dim * 2 * inner, 2 * latents * inner * dim
    attention = 2 * (2 * latents * keys * inner)  # summed over heads: inner = heads * dim_head
    return q + kv + out + attention + 2 * (2 * latents * dim * ff * dim)


def test_ovp_and_vmtf_counts_are_the_matmuls_of_their_shapes(report):
    from pipeline.model.config import preset

    config = preset("instructseg-tiny")
    ovp, vmtf = config.ovp, config.vmtf
    res5 = (config.preprocess.canvas // 32) ** 2
    for case, frames in (("image", 1), ("video", 4)):
        t = table(report[1], "instructseg-tiny", case)
        refer = t["meta"]["sequence_layout"]["refer"]
        for row in t["rows"]:
            for media, counted in ((N, row), (row["k"], row["variants"]["prune_references"])):
                layer = perceiver_flops(
                    ovp.num_latents, media + refer, ovp.num_latents, ovp.dim, ovp.heads * ovp.dim_head, ovp.ff_mult
                )
                assert counted["flops"]["ovp"] == frames * ovp.depth * layer  # per reference frame, per layer
        latents = 1 + refer  # the pooled state and every <refer> state; the first latent joins the keys
        layers = perceiver_flops(latents, res5, 1, vmtf.dim, vmtf.heads * vmtf.dim_head, vmtf.ff_mult)
        projections = 2 * latents * vmtf.llm_hidden * vmtf.dim + 2 * vmtf.llm_hidden * vmtf.dim
        projections += 2 * res5 * vmtf.in_channels * vmtf.dim + 2 * 2 * vmtf.dim * vmtf.out_dim
        assert {r["flops"]["vmtf"] for r in t["rows"]} == {vmtf.depth * layers + projections}


def test_video_siglip_runs_once_per_frame_and_the_release_once_per_role(report):
    for case, roles in (("image", 2), ("video", 5)):
        t = table(report[1], "instructseg-tiny", case)
        full_projector = table(report[1], "tiny", "image")["rows"][0]["flops"]["projector"]  # N tokens, same sizes
        for r in t["rows"]:
            release = r["variants"]["release"]
            assert release["flops"]["siglip"] == roles * r["flops"]["siglip"]
            # Ours: the kept tokens and once all N for the OVP; the release: the key frame's and each reference's.
            kept = r["flops"]["projector"] - full_projector
            assert release["flops"]["projector"] == kept + (roles - 1) * full_projector
            assert release["over_ours"] == pytest.approx(release["total_flops"] / r["total_flops"])
            assert release["total_flops"] > r["total_flops"]
            assert r["speedup_vs_release_keep1"] == pytest.approx(
                t["rows"][0]["variants"]["release"]["total_flops"] / r["total_flops"]
            )


def test_pruning_the_references_shrinks_the_ovp_too(report):
    for case in ("image", "video"):
        rows = table(report[1], "instructseg-tiny", case)["rows"]
        pruned = [r["variants"]["prune_references"] for r in rows]
        assert pruned[0]["flops"]["ovp"] == rows[0]["flops"]["ovp"]
        assert all(a["flops"]["ovp"] > b["flops"]["ovp"] for a, b in zip(pruned, pruned[1:], strict=False))
        for r, p in zip(rows, pruned, strict=True):
            assert p["flops"]["llm"] == r["flops"]["llm"] and p["total_flops"] < r["total_flops"]
            assert p["speedup_vs_keep1"] == pytest.approx(rows[0]["total_flops"] / p["total_flops"])


def test_fastv_runs_layers_before_k_on_every_token_and_the_rest_on_the_kept(report):
    from pipeline.model.config import preset

    layers = preset("tiny").llm.num_layers
    for t in report[1]["tables"]:
        rows = t["rows"]
        for r in rows:
            fastv = r["variants"]["fastv"]
            k = fastv["layer"]
            lengths = {"layers_before_k": rows[0]["sequence_length"], "layers_from_k": r["sequence_length"]}
            assert fastv["sequence_length"] == lengths
            # Per layer, the whole LLM's count over its layers (up to the rotary embedding's tiny matmul).
            expected = (k * rows[0]["flops"]["llm"] + (layers - k) * r["flops"]["llm"]) / layers
            assert fastv["flops"]["llm"] == pytest.approx(expected, rel=1e-4)
            assert fastv["flops"]["projector"] == rows[0]["flops"]["projector"]  # no selection before the LLM
            assert 0 < fastv["ranking_flops"] < fastv["flops"]["selection"]


def test_the_tables_are_what_flopcountermode_sees_over_the_predictors():
    """The stage counts add up to the FLOPs of real predictor calls (tiny, eager attention, whole sequences):
    InstructSeg on a one-frame video (its own 4 reference frames: SigLIP once, the OVP over 4 frames) at keep
    0.2, and HyperSeg with FastV at keep 0.2 (layer 1)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    benchmarks_on_path()
    from flops import Case, SequenceLayout, count_keeps, encoder_stages, meta_model

    from pipeline.model import HyperSegPredictor, InstructSegPredictor, PruningConfig
    from pipeline.model.config import preset
    from pipeline.model.parts.prompt import format_instruction, refer_ids

    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    text = "the red box"
    checks = (
        (InstructSegPredictor, "instructseg-tiny", PruningConfig("evtp", 0.2), "video", 4, "main"),
        (HyperSegPredictor, "tiny", PruningConfig("fastv", 0.2, options={"layer": 1}), "referring", 0, "fastv"),
    )
    for predictor_class, name, pruning, task, references, variant in checks:
        predictor = predictor_class.from_preset(name, pruning=pruning, attn_implementation="eager")
        predictor.model.requires_grad_(False)  # FlopCounterMode's module tracker, as on meta
        predictor.share_prefix = False
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if references:
                (results,) = predictor.predict_video([image], [text], task=task)
            else:
                results = predictor.predict(image, [text], task=task)
        config = predictor.model.config
        temporal = (config.ovp.num_latents * references) if references else config.fvp.num_latents
        refer = len(refer_ids(predictor.tokenizer, format_instruction(task, text)))
        layout = SequenceLayout(len(predictor.prompt_ids(task)) - 4, refer, temporal, config.decoder.num_queries)
        model = meta_model(preset(name))
        features = torch.randn(1, N, config.vision.hidden_size)
        _, _, per_keep = count_keeps(model, Case(task, layout, references), features, [0.2], 1, encoder_stages(model))
        assert results[0].sequence_length == layout.length(per_keep[0.2]["k"] if variant == "main" else N)
        assert sum(per_keep[0.2]["variants"][variant].values()) == counter.get_total_flops(), name


def test_flop_counts_on_meta_equal_an_eager_cpu_run_on_real_data():
    """The benchmark's premise: counts depend on shapes only, so meta tensors without a mask count the real run.

    The CPU reference is eager attention: FlopCounterMode has no formula for SDPA's fused CPU kernel and counts it
    as 0, while on meta SDPA takes the math path, whose matmuls it counts.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.model.config import preset
    from pipeline.model.hyperseg.model import HyperSeg

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
