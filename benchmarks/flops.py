"""Count HyperSeg's forward FLOPs per stage, one image, at each keep ratio of the visual tokens.

    python benchmarks/flops.py                         # hyperseg-3b, keep 1/0.5/0.2/0.1/0.05 -> results/flops.json
    python benchmarks/flops.py --preset tiny --out /tmp/flops.json
    python benchmarks/flops.py --text-tokens 74        # the video wording (see "video" in the JSON notes)

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, SDPA), B = 1, forward only.
The model is built at full size on the ``meta`` device (no weights are allocated: FLOPs depend on shapes only)
and each stage is fed meta tensors of its real input shape. Token selection is the exception: it is cheap and
data-dependent, so EVTP runs on CPU on a seeded random ``(1, N, D)`` float32 tensor. Prints a table (stages as
columns) and writes ``benchmarks/results/flops.json`` (``rows``: keep, k, sequence_length, flops / tflops per
stage, total, llm_share, speed-ups against keep 1; ``meta``: shapes, assumptions, what is not counted, versions).
The LLM sequence layout follows model.md §1.5; its text and ``<refer>`` lengths are arguments because the real
phi-2 tokenizer is not available here.
"""

import argparse
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model.config import PRESETS, HyperSegConfig, preset
from pipeline.model.hyperseg import HyperSeg
from pipeline.pruning import budget, select_tokens

RESULTS = Path(__file__).resolve().parent / "results" / "flops.json"
# Execution order of one image in ``HyperSegPredictor`` (encode -> prefill -> decode); the table's columns.
STAGES = ("siglip", "selection", "projector", "swin", "pixel_decoder", "fvp", "llm", "decoder")
# Stages whose cost depends on K; the others are counted once and shared by every row.
PER_KEEP_STAGES = ("selection", "projector", "llm")
DEFAULT_KEEPS = "1,0.5,0.2,0.1,0.05"
# model.md §1.5 (Inferred counts for the phi-2 tokenizer): 36 text before <image>, 1 "\n", ~15 after <temporal>,
# ~12 of " ASSISTANT: \nSure, the segmentation result is", the answer's [SEG] and the final <|endoftext|>.
DEFAULT_TEXT_TOKENS = 36 + 1 + 15 + 12 + 1 + 1
# A short RefCOCO instruction plus [SEG]: gives model.md's N = 1037 at keep 1 with the 66 text tokens.
DEFAULT_REFER_TOKENS = 14
# The video wording ("...instruction.\nThis is all the instruction: <refer>\n") has about 8 more phi-2 tokens
# than the referring one (Inferred, same tokenizer caveat).
VIDEO_EXTRA_TEXT_TOKENS = 8
# Multi-scale deformable attention samples with ``grid_sample``, which FlopCounterMode does not count: a
# 4-tap bilinear read (4 mul + 3 add) and the attention-weighted sum (2) per sampled channel value.
MSDA_FLOPS_PER_SAMPLE = 9


@dataclass(frozen=True)
class SequenceLayout:
    """Tokens of one LLM prefill apart from the image (model.md §1.5).

    Attributes:
        text: text ids of the template (system, turns, answer [SEG], final <|endoftext|>).
        refer: the ``<refer>`` span: instruction ids + [SEG].
        temporal: FVP tokens in ``<temporal>``.
        queries: seg queries in ``<seg>``.
    """

    text: int
    refer: int
    temporal: int
    queries: int

    def length(self, k: int) -> int:
        """Sequence length with ``k`` image tokens."""
        return self.text + k + self.temporal + self.refer + self.queries


@dataclass
class Counted:
    """One stage's count: total FLOPs and the split by aten op."""

    flops: int
    by_op: dict[str, int]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="hyperseg-3b", choices=sorted(PRESETS), help="model size")
    parser.add_argument("--keeps", default=DEFAULT_KEEPS, help="comma-separated keep ratios in (0, 1]")
    parser.add_argument("--text-tokens", type=int, default=DEFAULT_TEXT_TOKENS, help="template text ids")
    parser.add_argument("--refer-tokens", type=int, default=DEFAULT_REFER_TOKENS, help="instruction ids + [SEG]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random features EVTP selects from")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.text_tokens < 0 or args.refer_tokens < 1:
        parser.error("--text-tokens must be >= 0 and --refer-tokens >= 1 (the span holds at least [SEG])")
    return args


def count(fn: Callable[[], object]) -> tuple[Counted, object]:
    """Run ``fn`` under FlopCounterMode; returns its count and its output."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return Counted(flops=int(counter.get_total_flops()), by_op=by_op), out


def meta_model(config: HyperSegConfig) -> HyperSeg:
    """HyperSeg at full size with every parameter and buffer on the meta device (no memory, no values).

    ``torch.device("meta")`` reaches every factory call but the legacy ``torch.Tensor(...)`` constructor, which
    transformers' ``Mask2FormerPixelDecoder`` uses for ``level_embed``; ``.to("meta")`` moves that one over.
    Gradients are switched off: FlopCounterMode's module tracker otherwise trips over views of parameters made
    under ``no_grad`` (the FVP's expanded ``temporal_query``).
    """
    with torch.device("meta"):
        model = HyperSeg(config)
    return model.to("meta").requires_grad_(False).eval()


def fixed_stages(model: HyperSeg) -> tuple[dict[str, Counted], dict[str, list[int]]]:
    """The stages that do not depend on K, on meta inputs of their real shapes; and the shapes seen."""
    config = model.config
    meta = torch.device("meta")
    side, canvas = config.preprocess.siglip_size, config.preprocess.canvas
    hidden, queries = config.llm.hidden_size, config.decoder.num_queries
    counts, shapes = {}, {}
    with torch.no_grad():
        counts["siglip"], features = count(lambda: model.encode_vision(torch.empty(1, 3, side, side, device=meta)))
        counts["swin"], swin = count(lambda: model.swin(torch.empty(1, 3, canvas, canvas, device=meta)))
        counts["pixel_decoder"], pixel = count(lambda: model.pixel_decoder(swin))

        def fvp():
            tokens = model.fvp(swin["res3"], swin["res4"], swin["res5"])  # (1, latents, hidden)
            # The predictor always reads the next frame's latents back from the LLM's <temporal> states.
            return tokens, model.fvp.read_state(torch.empty(1, config.fvp.num_latents, hidden, device=meta))

        counts["fvp"], (temporal, _) = count(fvp)
        seg, refer = torch.empty(1, queries, hidden, device=meta), torch.empty(1, 1, hidden, device=meta)
        counts["decoder"], decoded = count(lambda: model.decode_masks(seg, refer, pixel))
    shapes["siglip_input"] = [1, 3, side, side]
    shapes["siglip_features"] = list(features.shape)
    shapes["swin_input"] = [1, 3, canvas, canvas]
    shapes.update({f"swin_{name}": list(t.shape) for name, t in swin.items()})
    shapes["pixel_mask_features"] = list(pixel.mask_features.shape)
    shapes["pixel_multi_scale_features"] = [list(t.shape) for t in pixel.multi_scale_features]
    shapes["fvp_tokens"] = list(temporal.shape)
    shapes["decoder_pred_masks"] = list(decoded.pred_masks.shape)
    shapes["decoder_predictions"] = [len(decoded.aux_outputs) + 1]
    return counts, shapes


def selection_stages(model: HyperSeg, features: torch.Tensor, keep: float) -> dict:
    """Selection (real CPU data) and projector (meta) for one keep ratio: ``k`` and their counts."""
    config, meta = model.config, torch.device("meta")
    k = budget(keep, features.shape[1])
    with torch.no_grad():
        selected, selection = count(lambda: select_tokens(features, model.grid, keep, "evtp"))
        if selection.k != k:
            raise RuntimeError(f"EVTP kept {selection.k} tokens at keep {keep}, budget says {k}")
        projector, _ = count(lambda: model.projector(torch.empty(1, k, config.vision.hidden_size, device=meta)))
    return {"k": k, "selection": selected, "projector": projector}


def llm_pass(model: HyperSeg, length: int, past: int = 0) -> Counted:
    """The LLM on ``length`` new tokens (meta, B = 1), after ``past`` tokens whose keys and values are cached.

    ``past`` > 0 is the shared-prefix suffix pass: the prefix runs first, uncounted, to fill the cache.
    """
    meta, hidden = torch.device("meta"), model.config.llm.hidden_size
    # B = 1 and no padding: no attention mask (building one from a meta tensor would need its values). The
    # released run masks one key (the final <|endoftext|>), which changes no shape and so no count.
    with torch.no_grad():
        cache = None
        if past:
            positions = torch.arange(past, device=meta)[None]
            embeds = torch.empty(1, past, hidden, device=meta)
            cache = model.llm(inputs_embeds=embeds, position_ids=positions, use_cache=True).cache
        embeds = torch.empty(1, length, hidden, device=meta)
        positions = torch.arange(past, past + length, device=meta)[None]
        counted, _ = count(
            lambda: model.llm(inputs_embeds=embeds, position_ids=positions, cache=cache).last_hidden_state
        )
    return counted


def keep_stages(model: HyperSeg, features: torch.Tensor, keep: float, layout: SequenceLayout) -> dict:
    """Selection, projector and the whole LLM prefill for one keep ratio."""
    stages = selection_stages(model, features, keep)
    length = layout.length(stages["k"])
    return {**stages, "sequence_length": length, "llm": llm_pass(model, length)}


def msda_estimate(config: HyperSegConfig, shapes: dict[str, list[int]]) -> int:
    """Hand count of the pixel decoder's uncounted ``grid_sample`` work (Inferred, not in the totals)."""
    settings = config.pixel_decoder
    queries = sum(h * w for _, _, h, w in shapes["pixel_multi_scale_features"])
    levels = len(shapes["pixel_multi_scale_features"])
    # Every query samples n_points per head per level, each point reading convs_dim / heads channels.
    samples = settings.encoder_layers * queries * levels * settings.n_points * settings.convs_dim
    return samples * MSDA_FLOPS_PER_SAMPLE


def build_rows(keeps: list[float], fixed: dict[str, Counted], per_keep: dict[float, dict]) -> list[dict]:
    base = per_keep[1.0]
    base_total = sum(c.flops for c in fixed.values()) + sum(base[s].flops for s in PER_KEEP_STAGES)
    rows = []
    for keep in keeps:
        part = per_keep[keep]
        flops = {s: (part[s] if s in PER_KEEP_STAGES else fixed[s]).flops for s in STAGES}
        total = sum(flops.values())
        rows.append(
            {
                "keep": keep,
                "k": part["k"],
                "sequence_length": part["sequence_length"],
                "flops": flops,
                "tflops": {s: f / 1e12 for s, f in flops.items()},
                "total_flops": total,
                "total_tflops": total / 1e12,
                "llm_attention_tflops": attention_flops(part["llm"]) / 1e12,
                "llm_share": flops["llm"] / total,
                "speedup_vs_keep1": base_total / total,
                "llm_speedup_vs_keep1": base["llm"].flops / flops["llm"],
            }
        )
    return rows


def attention_flops(counted: Counted) -> int:
    """The part of a count not in linear layers (``addmm`` / ``mm``): Q K^T and attention x V."""
    return sum(n for op, n in counted.by_op.items() if op not in ("aten.addmm", "aten.mm"))


def print_table(rows: list[dict], preset_name: str, layout: SequenceLayout) -> None:
    names = {"pixel_decoder": "pixdec", "selection": "select", "projector": "proj"}
    columns = [names.get(s, s) for s in STAGES]
    print(
        f"\n{preset_name}, B = 1, forward TFLOPs per stage (FlopCounterMode); LLM sequence = {layout.text} text + "
        f"K image + {layout.temporal} temporal + {layout.refer} refer + {layout.queries} queries\n"
    )
    header = f"{'keep':>5} {'K':>4} {'L':>5} " + " ".join(f"{c:>7}" for c in columns)
    header += f" {'total':>7} {'LLM %':>6} {'speedup':>7} {'LLM x':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = " ".join(f"{r['tflops'][s]:>7.4f}" for s in STAGES)
        print(
            f"{r['keep']:>5} {r['k']:>4} {r['sequence_length']:>5} {cells} {r['total_tflops']:>7.4f} "
            f"{100 * r['llm_share']:>6.1f} {r['speedup_vs_keep1']:>6.2f}x {r['llm_speedup_vs_keep1']:>5.2f}x"
        )


def notes(config: HyperSegConfig, msda: int, per_token: float) -> dict[str, str]:
    return {
        "counted": "FlopCounterMode: matmul (mm/addmm/bmm/baddbmm), convolution, SDPA; 1 multiply-add = 2 FLOPs",
        "not_counted": (
            "element-wise ops, norms, softmax, GELU, RoPE, embedding lookups, the pixel decoder's multi-scale "
            "deformable attention grid_sample (see msda_grid_sample_tflops_estimate), and post-processing "
            "(bilinear upsampling of the 100 masks to the canvas and the original size)"
        ),
        "attention": (
            "SDPA is counted as full Q K^T and attention x V: the LLM's causal mask is not discounted "
            "(a causal kernel does about half the attention work; llm_attention_tflops per row). On meta, SDPA "
            "takes the math path and its matmuls are counted; on CPU with real data FlopCounterMode counts SDPA's "
            "fused CPU kernel (aten._scaled_dot_product_flash_attention_for_cpu) as 0, which is one more reason "
            "to count on meta (tests/benchmarks/test_flops_benchmark.py checks meta against an eager CPU run)"
        ),
        "meta_device": (
            "every stage but selection ran on meta tensors. Three workarounds, none changing a shape: "
            "pixel_decoder.level_embed is built on CPU by transformers' legacy torch.Tensor(...) constructor even "
            "under torch.device('meta') and is moved with .to('meta'); parameters get requires_grad=False, since "
            "FlopCounterMode's module tracker fails on no_grad views of parameters (the FVP's expanded "
            "temporal_query); the LLM runs without an attention mask (B = 1, no padding) because transformers "
            "reads the mask's values (.item()) to pick its causal fast path"
        ),
        "selection": (
            "EVTP (default options) on CPU on real random data; keep 1 selects nothing (no distances). The "
            "pairwise distances are a block-triangular Gram (about 0.58 of a full one) and are counted; the greedy "
            "farthest-first passes are element-wise and are not"
        ),
        "fvp": "res3-res5 1x1 projections, 3 perceiver layers, the 512 -> LLM-width expansion, and read_state",
        "decoder": (
            f"seg_query_projector and SEG_token_projector, then {config.decoder.num_layers} masked-attention layers "
            f"with {config.decoder.num_layers + 1} mask predictions on the mask features"
        ),
        "video": (
            "a video frame costs the same stages: one full forward per frame, B = 1, with the previous frame's "
            f"FVP latents instead of temporal_query (same shapes). Its wording adds about "
            f"{VIDEO_EXTRA_TEXT_TOKENS} text tokens (Inferred), ~{VIDEO_EXTRA_TEXT_TOKENS * per_token / 1e12:.3f} "
            f"TF of LLM per frame; rerun with --text-tokens {DEFAULT_TEXT_TOKENS + VIDEO_EXTRA_TEXT_TOKENS} for it"
        ),
        "msda_estimate": (
            f"about {msda / 1e12:.4f} TF by hand: encoder layers x queries x levels x points x channels x "
            f"{MSDA_FLOPS_PER_SAMPLE} (4-tap bilinear + weighted sum); Inferred, not in the totals"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        keeps = [float(k) for k in args.keeps.split(",")]
    except ValueError as error:
        raise SystemExit(f"--keeps must be comma-separated numbers: {error}") from None
    config = preset(args.preset)
    n = config.vision.grid[0] * config.vision.grid[1]
    for keep in keeps:
        try:
            budget(keep, n)
        except ValueError as error:
            raise SystemExit(f"--keeps: {error}") from None
    layout = SequenceLayout(
        text=args.text_tokens,
        refer=args.refer_tokens,
        temporal=config.fvp.num_latents,
        queries=config.decoder.num_queries,
    )
    model = meta_model(config)
    fixed, shapes = fixed_stages(model)
    features = torch.randn(1, n, config.vision.hidden_size, generator=torch.Generator().manual_seed(args.seed))
    per_keep = {keep: keep_stages(model, features, keep, layout) for keep in sorted({1.0, *keeps}, reverse=True)}
    rows = build_rows(keeps, fixed, per_keep)
    print_table(rows, args.preset, layout)

    smallest = min(per_keep)
    dropped = per_keep[1.0]["k"] - per_keep[smallest]["k"]
    # Marginal LLM cost of one image token (FLOPs), from keep 1 to the smallest keep.
    per_token = (per_keep[1.0]["llm"].flops - per_keep[smallest]["llm"].flops) / max(dropped, 1)
    msda = msda_estimate(config, shapes)
    fixed_total = sum(c.flops for c in fixed.values())
    keep1_total = fixed_total + sum(per_keep[1.0][s].flops for s in PER_KEEP_STAGES)
    print(
        f"\nLLM: {per_token / 1e9:.2f} GFLOPs per image token removed. The stages that do not depend on K "
        f"({fixed_total / 1e12:.3f} TF) bound the speed-up at {keep1_total / fixed_total:.2f}x (free LLM)"
    )
    print(f"not counted: element-wise ops, MSDA grid_sample (~{msda / 1e12:.4f} TF by hand), post-processing")
    print("video: one full forward per frame, the same stages (see meta.notes.video)")

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": args.preset,
        "batch": 1,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "counter": "torch.utils.flop_counter.FlopCounterMode",
        "stages": list(STAGES),
        "image_tokens": n,
        "grid": list(config.vision.grid),
        "siglip_layers_run": config.vision.layers_run,
        "sequence_layout": asdict(layout),
        "sequence_layout_source": (
            "model.md §1.5 (Inferred phi-2 counts): 36 text + image + 1 + 128 temporal + ~15 text + refer + ~12 "
            "text + [SEG] + 100 queries + <|endoftext|>; refer 14 gives N = 1037 at keep 1. The golden-tiny run has "
            "133 text + 11 refer, but with its own 385-id tokenizer, not phi-2's"
        ),
        "shapes": shapes,
        "selection": {
            "method": "evtp",
            "features": f"torch.randn(1, {n}, {config.vision.hidden_size}), seed {args.seed}, float32, CPU",
        },
        "k_rule": "pipeline.pruning.budget: K = min(N, max(1, round(keep * N))), half to even",
        "msda_grid_sample_tflops_estimate": msda / 1e12,
        "llm_gflops_per_image_token": per_token / 1e9,
        "ops_keep1": {s: (per_keep[1.0][s] if s in PER_KEEP_STAGES else fixed[s]).by_op for s in STAGES},
        "notes": notes(config, msda, per_token),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
