"""Count the forward FLOPs per stage of HyperSeg and InstructSeg, one expression on one frame, per keep ratio.

    python benchmarks/flops.py                         # hyperseg-3b + instructseg (image, video) -> results/flops.json
    python benchmarks/flops.py --preset tiny instructseg-tiny --out /tmp/flops.json
    python benchmarks/flops.py --preset hyperseg-3b --text-tokens 74   # HyperSeg's video wording (notes.video)

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, SDPA), B = 1, forward only.
The model is built at full size on the ``meta`` device (no weights are allocated: FLOPs depend on shapes only)
and each stage is fed meta tensors of its real input shape. Token selection is the exception: it is cheap and
data-dependent, so EVTP runs on CPU on a seeded random ``(1, N, D)`` float32 tensor.

The family follows the preset's config. A HyperSeg preset (``hyperseg-3b``, ``tiny``, ``bench``) gives one
table, an image (a video frame runs the same stages, see its notes). An InstructSeg preset (``instructseg``,
``instructseg-tiny``, ``instructseg-bench``) gives two: an image, its own only reference frame (128 OVP tokens),
and a video key frame with its 4 reference frames (512 OVP tokens), counted as ``InstructSegPredictor`` runs
them: SigLIP, selection and projector once per video frame, whatever roles the frame plays. Every row also
holds variants: ``fastv`` (both families); for InstructSeg ``prune_references`` (the OVP reads each reference
frame's K kept tokens instead of all N) and ``release`` (SigLIP and the projector once per role, as the
released ``eval_seg`` runs them: twice for an image, five times per video key frame).

Prints a table per preset and case (stages as columns) and one of its variants, and writes
``benchmarks/results/flops.json``: ``meta`` (versions, keeps, seed) and ``tables``, each with its ``meta``
(preset, family, case, shapes, sequence layout, assumptions, what is not counted) and ``rows`` (keep, k,
sequence_length, flops / tflops per stage, total, llm_share, speed-ups against keep 1, variants). The LLM
sequence layouts follow model.md §1.5 and §1.10; their text and ``<refer>`` lengths are arguments because the
real phi-2 tokenizer is not available here.
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
from transformers.masking_utils import create_causal_mask

from pipeline.model import HyperSegConfig, InstructSegConfig
from pipeline.model.config import PRESETS, MaskLlmConfig, preset
from pipeline.model.hyperseg.model import HyperSeg
from pipeline.model.instructseg.model import InstructSeg
from pipeline.model.parts.mask_llm import MaskLlm
from pipeline.model.registry import model_for
from pipeline.model.token_pruning.attention_rows import capture_attention_input, last_row_attention
from pipeline.model.token_pruning.fastv import DEFAULT_LAYER as FASTV_LAYER
from pipeline.model.token_pruning.fastv import check_layer
from pipeline.model.token_pruning.token_selection import kept_selection
from pipeline.pruning import budget, select_tokens

RESULTS = Path(__file__).resolve().parent / "results" / "flops.json"
# Execution order of one image in ``HyperSegPredictor`` (encode -> prefill -> decode); the table's columns.
STAGES = ("siglip", "selection", "projector", "swin", "pixel_decoder", "fvp", "llm", "decoder")
# The same for ``InstructSegPredictor`` (prefill runs the OVP, then the LLM; decode the VMTF, then the decoder).
# Its timed "decoder" holds the VMTF; the FLOP table counts the two apart.
INSTRUCTSEG_STAGES = ("siglip", "selection", "projector", "swin", "pixel_decoder", "ovp", "llm", "vmtf", "decoder")
# Stages whose cost depends on K; the others are counted once and shared by every row.
PER_KEEP_STAGES = ("selection", "projector", "llm")
DEFAULT_PRESETS = ("hyperseg-3b", "instructseg")
DEFAULT_KEEPS = "1,0.5,0.2,0.1,0.05"
# model.md §1.5 (Inferred counts for the phi-2 tokenizer): 36 text before <image>, 1 "\n", ~15 after <temporal>,
# ~12 of " ASSISTANT: \nSure, the segmentation result is", the answer's [SEG] and the final <|endoftext|>.
# InstructSeg's image wording (model.md §1.10) has the same text chunks with <temporal> and <image> swapped and
# a lower-case " please" (one id either way): the same 66.
DEFAULT_TEXT_TOKENS = 36 + 1 + 15 + 12 + 1 + 1
# A short RefCOCO instruction plus [SEG]: gives model.md's N = 1037 at keep 1 with the 66 text tokens.
DEFAULT_REFER_TOKENS = 14
# The video wording ("...instruction.\nThis is all the instruction: <refer>\n") has about 8 more phi-2 tokens
# than the referring one (Inferred, same tokenizer caveat).
VIDEO_EXTRA_TEXT_TOKENS = 8
# InstructSeg's video wording (model.md §1.10) is HyperSeg's but for its opening, "There are reference frames and
# key frame " (There, are, reference, frames, and, key, frame, " ": 8 ids) where HyperSeg's has "This is a frame "
# (5 ids), and "\n." for "\n," (Inferred, same tokenizer caveat). 77 text ids: N = 1432 at keep 1 with a 14-id
# instruction, where model.md §1.10 estimates ~1,436 from "~95 text" (text + refer).
INSTRUCTSEG_VIDEO_TEXT_TOKENS = DEFAULT_TEXT_TOKENS + VIDEO_EXTRA_TEXT_TOKENS + 8 - 5
# Multi-scale deformable attention samples with ``grid_sample``, which FlopCounterMode does not count: a
# 4-tap bilinear read (4 mul + 3 add) and the attention-weighted sum (2) per sampled channel value.
MSDA_FLOPS_PER_SAMPLE = 9
COLUMN_NAMES = {"pixel_decoder": "pixdec", "selection": "select", "projector": "proj"}


@dataclass(frozen=True)
class SequenceLayout:
    """Tokens of one LLM prefill apart from the image (model.md §1.5).

    Attributes:
        text: text ids of the template (system, turns, answer [SEG], final <|endoftext|>).
        refer: the ``<refer>`` span: instruction ids + [SEG].
        temporal: FVP tokens in ``<temporal>`` (InstructSeg: the OVP's, 128 per reference frame).
        queries: seg queries in ``<seg>``.
    """

    text: int
    refer: int
    temporal: int
    queries: int

    def length(self, k: int) -> int:
        """Sequence length with ``k`` image tokens."""
        return self.text + k + self.temporal + self.refer + self.queries


@dataclass(frozen=True)
class Case:
    """One table: what one expression on one frame runs.

    Attributes:
        name: ``image`` or ``video`` (InstructSeg: a key frame with its reference frames).
        layout: the LLM sequence around the image tokens.
        reference_frames: InstructSeg's T_ref, the frames the OVP reads (1 for an image: itself); 0 for HyperSeg.
    """

    name: str
    layout: SequenceLayout
    reference_frames: int = 0


@dataclass
class Counted:
    """One stage's count: total FLOPs and the split by aten op."""

    flops: int
    by_op: dict[str, int]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset",
        nargs="+",
        default=list(DEFAULT_PRESETS),
        choices=sorted(PRESETS),
        metavar="PRESET",
        help=f"one or more of {', '.join(sorted(PRESETS))}: a table per HyperSeg preset, two (image, video) per "
        "InstructSeg one",
    )
    parser.add_argument("--keeps", default=DEFAULT_KEEPS, help="comma-separated keep ratios in (0, 1]")
    parser.add_argument(
        "--text-tokens", type=int, default=DEFAULT_TEXT_TOKENS, help="template text ids, image (both families)"
    )
    parser.add_argument(
        "--refer-tokens", type=int, default=DEFAULT_REFER_TOKENS, help="instruction ids + [SEG], image"
    )
    parser.add_argument(
        "--video-text-tokens",
        type=int,
        default=INSTRUCTSEG_VIDEO_TEXT_TOKENS,
        help="template text ids of an InstructSeg video key frame",
    )
    parser.add_argument(
        "--video-refer-tokens", type=int, default=DEFAULT_REFER_TOKENS, help="instruction ids + [SEG], video"
    )
    parser.add_argument(
        "--fastv-layer",
        type=int,
        default=None,
        help=f"FastV's K, the first LLM layer that sees only the kept tokens (default {FASTV_LAYER}, at most L - 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random features EVTP selects from")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.text_tokens, args.video_text_tokens) < 0 or min(args.refer_tokens, args.video_refer_tokens) < 1:
        parser.error("text tokens must be >= 0 and refer tokens >= 1 (the span holds at least [SEG])")
    args.preset = list(dict.fromkeys(args.preset))
    return args


def count(fn: Callable[[], object]) -> tuple[Counted, object]:
    """Run ``fn`` under FlopCounterMode; returns its count and its output."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return Counted(flops=int(counter.get_total_flops()), by_op=by_op), out


def meta_model(config: MaskLlmConfig) -> MaskLlm:
    """The config's model (HyperSeg or InstructSeg) at full size, every parameter and buffer on the meta device.

    ``torch.device("meta")`` reaches every factory call but the legacy ``torch.Tensor(...)`` constructor, which
    transformers' ``Mask2FormerPixelDecoder`` uses for ``level_embed``; ``.to("meta")`` moves that one over.
    Gradients are switched off: FlopCounterMode's module tracker otherwise trips over views of parameters made
    under ``no_grad`` (the FVP's and the OVP's expanded ``temporal_query``).
    """
    with torch.device("meta"):
        model = model_for(config)(config)
    return model.to("meta").requires_grad_(False).eval()


def stages_of(config: MaskLlmConfig) -> tuple[str, ...]:
    """The table's columns for the config's family."""
    return INSTRUCTSEG_STAGES if isinstance(config, InstructSegConfig) else STAGES


def encoder_stages(model: MaskLlm) -> tuple[dict[str, Counted], dict[str, list[int]], dict, object]:
    """SigLIP, Swin and the pixel decoder (both families share them), on meta inputs of their real shapes.

    Returns:
        Their counts, the shapes seen, and the Swin and pixel-decoder outputs (meta) for the stages after them.
    """
    config = model.config
    meta = torch.device("meta")
    side, canvas = config.preprocess.siglip_size, config.preprocess.canvas
    counts, shapes = {}, {}
    with torch.no_grad():
        counts["siglip"], features = count(lambda: model.encode_vision(torch.empty(1, 3, side, side, device=meta)))
        counts["swin"], swin = count(lambda: model.swin(torch.empty(1, 3, canvas, canvas, device=meta)))
        counts["pixel_decoder"], pixel = count(lambda: model.pixel_decoder(swin))
    shapes["siglip_input"] = [1, 3, side, side]
    shapes["siglip_features"] = list(features.shape)
    shapes["swin_input"] = [1, 3, canvas, canvas]
    shapes.update({f"swin_{name}": list(t.shape) for name, t in swin.items()})
    shapes["pixel_mask_features"] = list(pixel.mask_features.shape)
    shapes["pixel_multi_scale_features"] = [list(t.shape) for t in pixel.multi_scale_features]
    return counts, shapes, swin, pixel


def fixed_stages(model: HyperSeg, encoder: tuple | None = None) -> tuple[dict[str, Counted], dict[str, list[int]]]:
    """HyperSeg's stages that do not depend on K, on meta inputs of their real shapes; and the shapes seen.

    ``encoder``: ``encoder_stages(model)`` when already counted.
    """
    config = model.config
    meta = torch.device("meta")
    hidden, queries = config.llm.hidden_size, config.decoder.num_queries
    counts, shapes, swin, pixel = encoder or encoder_stages(model)
    counts, shapes = dict(counts), dict(shapes)
    with torch.no_grad():

        def fvp():
            tokens = model.fvp(swin["res3"], swin["res4"], swin["res5"])  # (1, latents, hidden)
            # The predictor always reads the next frame's latents back from the LLM's <temporal> states.
            return tokens, model.fvp.read_state(torch.empty(1, config.fvp.num_latents, hidden, device=meta))

        counts["fvp"], (temporal, _) = count(fvp)
        seg, refer = torch.empty(1, queries, hidden, device=meta), torch.empty(1, 1, hidden, device=meta)
        counts["decoder"], decoded = count(lambda: model.decode_masks(seg, refer, pixel))
    shapes["fvp_tokens"] = list(temporal.shape)
    shapes["decoder_pred_masks"] = list(decoded.pred_masks.shape)
    shapes["decoder_predictions"] = [len(decoded.aux_outputs) + 1]
    return counts, shapes


def ovp_pass(model: InstructSeg, frames: int, tokens: int, refer: int) -> tuple[Counted, list[int]]:
    """The OVP of one expression: ``frames`` reference frames of ``tokens`` projected tokens each, and the
    ``refer`` instruction embeddings (ids + [SEG]) every frame's media end with; its count and output shape."""
    meta, hidden = torch.device("meta"), model.config.llm.hidden_size
    with torch.no_grad():
        counted, out = count(
            lambda: model.ovp(
                torch.empty(frames, tokens, hidden, device=meta), torch.empty(refer, hidden, device=meta)
            )
        )
    return counted, list(out.shape)


def instructseg_fixed_stages(
    model: InstructSeg, case: Case, encoder: tuple | None = None
) -> tuple[dict[str, Counted], dict[str, list[int]]]:
    """InstructSeg's stages that do not depend on K (the OVP reading every token of each reference frame, the
    predictor's default), on meta inputs of their real shapes; and the shapes seen."""
    config = model.config
    meta = torch.device("meta")
    hidden, queries = config.llm.hidden_size, config.decoder.num_queries
    n = config.vision.grid[0] * config.vision.grid[1]
    counts, shapes, swin, pixel = encoder or encoder_stages(model)
    counts, shapes = dict(counts), dict(shapes)
    counts["ovp"], shapes["ovp_tokens"] = ovp_pass(model, case.reference_frames, n, case.layout.refer)
    shapes["ovp_media_per_frame"] = [n + case.layout.refer, hidden]
    with torch.no_grad():
        # The VMTF reads the LLM's states over the <refer> span and the key frame's res5 (TextFusion.forward).
        refer = torch.empty(case.layout.refer, hidden, device=meta)
        counts["vmtf"], seg_embedding = count(lambda: model.vmtf(refer, swin["res5"][0]))
        seg = torch.empty(1, queries, hidden, device=meta)
        counts["decoder"], decoded = count(lambda: model.decode_masks(seg, seg_embedding[None], pixel))
    res5 = swin["res5"]
    shapes["vmtf_latents"] = [1 + case.layout.refer, config.vmtf.dim]
    shapes["vmtf_media"] = [res5.shape[2] * res5.shape[3], config.vmtf.dim]
    shapes["seg_embedding"] = [1, *seg_embedding.shape]
    shapes["decoder_pred_masks"] = list(decoded.pred_masks.shape)
    shapes["decoder_predictions"] = [len(decoded.aux_outputs) + 1]
    return counts, shapes


def selection_stages(model: MaskLlm, features: torch.Tensor, keep: float) -> dict:
    """Selection (real CPU data) and projector (meta) for one keep ratio: ``k`` and their counts."""
    config, meta = model.config, torch.device("meta")
    k = budget(keep, features.shape[1])
    with torch.no_grad():
        selected, selection = count(lambda: select_tokens(features, model.grid, keep, "evtp"))
        if selection.k != k:
            raise RuntimeError(f"EVTP kept {selection.k} tokens at keep {keep}, budget says {k}")
        projector, _ = count(lambda: model.projector(torch.empty(1, k, config.vision.hidden_size, device=meta)))
    return {"k": k, "selection": selected, "projector": projector}


def llm_pass(model: MaskLlm, length: int, past: int = 0) -> Counted:
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


def keep_stages(model: MaskLlm, features: torch.Tensor, keep: float, layout: SequenceLayout) -> dict:
    """Selection, projector and the whole LLM prefill for one keep ratio."""
    stages = selection_stages(model, features, keep)
    length = layout.length(stages["k"])
    return {**stages, "sequence_length": length, "llm": llm_pass(model, length)}


def projector_pass(model: MaskLlm, tokens: int) -> Counted:
    """The projector on ``tokens`` SigLIP features (meta)."""
    meta, width = torch.device("meta"), model.config.vision.hidden_size
    with torch.no_grad():
        counted, _ = count(lambda: model.projector(torch.empty(1, tokens, width, device=meta)))
    return counted


def _layers(llm, layers, length: int) -> torch.Tensor:
    """Phi decoder layers over ``(1, length, hidden)`` meta states, with the causal mask and rotary embedding
    ``PhiModel.forward`` builds; as ``pipeline.model.token_pruning.fastv._run_layers`` runs each part of a FastV
    prefill."""
    meta = torch.device("meta")
    hidden = torch.empty(1, length, llm.config.hidden_size, device=meta)
    positions = torch.arange(length, device=meta)[None]
    # No position ids for the mask: without a cache and a 2-D mask transformers would read them (.item()) to
    # look for packed sequences; one sequence of arange positions has the plain causal mask.
    mask = create_causal_mask(config=llm.config, inputs_embeds=hidden, attention_mask=None, cache=None)
    rotary = llm.rotary_emb(hidden, position_ids=positions)
    for layer in layers:
        hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
    return hidden


def fastv_pass(model: MaskLlm, length: int, dropped: int, layer: int) -> tuple[Counted, Counted]:
    """FastV's prefill (``pipeline.model.token_pruning.fastv.run_llm_fastv``) on meta: layers ``< layer`` on
    ``length`` tokens, the others on ``length - dropped``; and its ranking, the last row's attention at layer
    ``layer - 1`` recomputed from that layer's input (``attention_rows.last_row_attention``: q of one row, k of
    every row).

    Returns:
        The LLM's count (both parts) and the ranking's.
    """
    llm = model.llm
    layers = llm.layers[: llm.config.num_hidden_layers]
    layer = check_layer(layer, len(layers))
    meta = torch.device("meta")
    ranker = layers[layer - 1].self_attn
    with torch.no_grad():
        with capture_attention_input(ranker) as captured:
            first, _ = count(lambda: _layers(llm, layers[:layer], length))
        key_mask = torch.ones(1, length, dtype=torch.bool, device=meta)
        query = torch.tensor([length - 1], device=meta)  # any row: the count depends on shapes only
        ranking, _ = count(lambda: last_row_attention(ranker, captured, key_mask, query))
        rest, _ = count(lambda: _layers(llm, layers[layer:], length - dropped))
    by_op = {op: first.by_op.get(op, 0) + rest.by_op.get(op, 0) for op in {*first.by_op, *rest.by_op}}
    return Counted(flops=first.flops + rest.flops, by_op=by_op), ranking


def coverage_pass(model: MaskLlm, features: torch.Tensor, k: int) -> Counted:
    """FastV's per-expression coverage diagnostics (``token_selection.kept_selection``) on CPU, ``k`` kept."""
    with torch.no_grad():
        counted, _ = count(lambda: kept_selection(features, torch.arange(k)[None], model.grid))
    return counted


def msda_estimate(config: MaskLlmConfig, shapes: dict[str, list[int]]) -> int:
    """Hand count of the pixel decoder's uncounted ``grid_sample`` work (Inferred, not in the totals)."""
    settings = config.pixel_decoder
    queries = sum(h * w for _, _, h, w in shapes["pixel_multi_scale_features"])
    levels = len(shapes["pixel_multi_scale_features"])
    # Every query samples n_points per head per level, each point reading convs_dim / heads channels.
    samples = settings.encoder_layers * queries * levels * settings.n_points * settings.convs_dim
    return samples * MSDA_FLOPS_PER_SAMPLE


def attention_flops(counted: Counted) -> int:
    """The part of a count not in linear layers (``addmm`` / ``mm``): Q K^T and attention x V."""
    return sum(n for op, n in counted.by_op.items() if op not in ("aten.addmm", "aten.mm"))


def summary(flops: dict[str, int], base: dict[str, int]) -> dict:
    """Per-stage FLOPs in ``stages`` order, their total and shares, and the speed-ups against ``base``."""
    total = sum(flops.values())
    return {
        "flops": flops,
        "tflops": {s: f / 1e12 for s, f in flops.items()},
        "total_flops": total,
        "total_tflops": total / 1e12,
        "llm_share": flops["llm"] / total,
        "speedup_vs_keep1": sum(base.values()) / total,
        "llm_speedup_vs_keep1": base["llm"] / flops["llm"],
    }


def count_keeps(
    model: MaskLlm,
    case: Case,
    features: torch.Tensor,
    keeps: list[float],
    fastv_layer: int,
    encoder: tuple,
    selections: dict | None = None,
) -> tuple[dict[str, Counted], dict[str, list[int]], dict[float, dict]]:
    """Every count of one table: the fixed stages, and per keep (1 included) the stage FLOPs of each variant.

    ``selections``: a cache of the CPU-side counts (EVTP and FastV's coverage per keep), which depend on the
    model and the features only; one per model, shared by its cases.

    Returns:
        The fixed stages' counts, the shapes, and per keep ``k``, ``sequence_length``, the LLM's ``Counted`` and
        per variant (``main``, ``fastv``; InstructSeg also ``prune_references``, ``release``) its stage FLOPs.
    """
    instructseg = isinstance(model, InstructSeg)
    stages = stages_of(model.config)
    n = features.shape[1]
    if instructseg:
        fixed, shapes = instructseg_fixed_stages(model, case, encoder)
    else:
        fixed, shapes = fixed_stages(model, encoder)
    full_projector = projector_pass(model, n).flops
    selections = {} if selections is None else selections
    per_keep = {}
    for keep in sorted({1.0, *keeps}, reverse=True):
        if keep not in selections:
            chosen = selection_stages(model, features, keep)
            selections[keep] = (chosen, coverage_pass(model, features, chosen["k"]))
        chosen, coverage = selections[keep]
        k = chosen["k"]
        length = case.layout.length(k)
        # keep_stages, with the selection counted once per model.
        part = {**chosen, "sequence_length": length, "llm": llm_pass(model, length)}
        main = {s: (part[s] if s in PER_KEEP_STAGES else fixed[s]).flops for s in stages}
        fastv_llm, ranking = fastv_pass(model, case.layout.length(n), n - k, fastv_layer)
        fastv = dict(main, llm=fastv_llm.flops, selection=ranking.flops + coverage.flops)
        # FastV selects nothing before the LLM: the projector sees every token.
        fastv["projector"] = full_projector
        variants = {"main": main, "fastv": fastv}
        if instructseg:
            # InstructSegPredictor._references: by default the OVP reads the projection of all N tokens of each
            # frame, a second projector pass beside the kept tokens'; with prune_references it reads the kept ones.
            main["projector"] += full_projector
            fastv["projector"] += full_projector
            ovp = ovp_pass(model, case.reference_frames, k, case.layout.refer)[0].flops
            variants["prune_references"] = dict(main, projector=part["projector"].flops, ovp=ovp)
            # The release encodes the key frame and each reference frame apart (SigLIP + projector per role).
            release = dict(main, siglip=(1 + case.reference_frames) * fixed["siglip"].flops)
            release["projector"] = part["projector"].flops + case.reference_frames * full_projector
            variants["release"] = release
        per_keep[keep] = {
            "k": k,
            "sequence_length": length,
            "llm": part["llm"],
            "counted": {s: part[s] for s in PER_KEEP_STAGES},
            "ranking": ranking.flops,
            "variants": {name: {s: v[s] for s in stages} for name, v in variants.items()},
        }
    return fixed, shapes, per_keep


def build_rows(keeps: list[float], per_keep: dict[float, dict], case: Case, fastv_layer: int) -> list[dict]:
    base = per_keep[1.0]["variants"]
    n = per_keep[1.0]["k"]
    rows = []
    for keep in keeps:
        part = per_keep[keep]
        variants = part["variants"]
        row = {
            "keep": keep,
            "k": part["k"],
            "sequence_length": part["sequence_length"],
            **summary(variants["main"], base["main"]),
            "llm_attention_tflops": attention_flops(part["llm"]) / 1e12,
        }
        length = case.layout.length(n)
        row["variants"] = {
            "fastv": {
                "layer": fastv_layer,
                "sequence_length": {"layers_before_k": length, "layers_from_k": length - (n - part["k"])},
                "ranking_flops": part["ranking"],
                **summary(variants["fastv"], base["main"]),
            }
        }
        if "release" in variants:
            row["variants"]["prune_references"] = summary(variants["prune_references"], base["main"])
            release = summary(variants["release"], base["release"])
            release["over_ours"] = release["total_flops"] / row["total_flops"]
            row["variants"]["release"] = release
            row["speedup_vs_release_keep1"] = sum(base["release"].values()) / row["total_flops"]
        rows.append(row)
    return rows


def describe(config: MaskLlmConfig, preset_name: str, case: Case) -> str:
    layout = case.layout
    if isinstance(config, InstructSegConfig):
        what = "an image (its own reference frame)" if case.name == "image" else "a video key frame"
        temporal = f"{layout.temporal} temporal (OVP, {case.reference_frames} x {config.ovp.num_latents})"
        who = f"{preset_name} {case.name}: {what}"
    else:
        temporal = f"{layout.temporal} temporal (FVP)"
        who = f"{preset_name} {case.name}"
    return (
        f"{who}, B = 1, one expression, forward TFLOPs per stage (FlopCounterMode); LLM sequence = {layout.text} "
        f"text + K image + {temporal} + {layout.refer} refer + {layout.queries} queries"
    )


def print_table(rows: list[dict], title: str, stages: tuple[str, ...] = STAGES) -> None:
    columns = [COLUMN_NAMES.get(s, s) for s in stages]
    print(f"\n{title}\n")
    header = f"{'keep':>5} {'K':>4} {'L':>5} " + " ".join(f"{c:>7}" for c in columns)
    header += f" {'total':>7} {'LLM %':>6} {'speedup':>7} {'LLM x':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = " ".join(f"{r['tflops'][s]:>7.4f}" for s in stages)
        print(
            f"{r['keep']:>5} {r['k']:>4} {r['sequence_length']:>5} {cells} {r['total_tflops']:>7.4f} "
            f"{100 * r['llm_share']:>6.1f} {r['speedup_vs_keep1']:>6.2f}x {r['llm_speedup_vs_keep1']:>5.2f}x"
        )


def print_variants(rows: list[dict], fastv_layer: int) -> None:
    """TFLOPs and speed-ups of each variant; all against the main table's keep 1, the release against its own."""
    instructseg = "release" in rows[0]["variants"]
    header = f"{'keep':>5} {'K':>4} | {'total':>7} {'x':>6}"
    if instructseg:
        header += f" | {'refs pruned: proj':>17} {'ovp':>7} {'total':>7} {'x':>6}"
        header += f" | {'release: siglip':>15} {'proj':>7} {'total':>7} {'x':>6} {'/ours':>6}"
    header += f" | {f'FastV K={fastv_layer}: select':>17} {'llm':>7} {'total':>7} {'x':>6}"
    print("\nvariants (TFLOPs; x: speed-up against keep 1 of the table above, the release's against its own keep 1)\n")
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['keep']:>5} {r['k']:>4} | {r['total_tflops']:>7.4f} {r['speedup_vs_keep1']:>5.2f}x"
        v = r["variants"]
        if instructseg:
            p, rel = v["prune_references"], v["release"]
            line += (
                f" | {p['tflops']['projector']:>17.4f} {p['tflops']['ovp']:>7.4f} {p['total_tflops']:>7.4f} "
                f"{p['speedup_vs_keep1']:>5.2f}x | {rel['tflops']['siglip']:>15.4f} "
                f"{rel['tflops']['projector']:>7.4f} {rel['total_tflops']:>7.4f} {rel['speedup_vs_keep1']:>5.2f}x "
                f"{rel['over_ours']:>5.2f}x"
            )
        f = v["fastv"]
        line += (
            f" | {f['tflops']['selection']:>17.4f} {f['tflops']['llm']:>7.4f} {f['total_tflops']:>7.4f} "
            f"{f['speedup_vs_keep1']:>5.2f}x"
        )
        print(line)


def common_notes(config: MaskLlmConfig, msda: int, fastv_layer: int) -> dict[str, str]:
    """The notes both families share."""
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
            "FlopCounterMode's module tracker fails on no_grad views of parameters (the FVP's and OVP's expanded "
            "temporal_query); the LLM runs without an attention mask (B = 1, no padding) because transformers "
            "reads the mask's values (.item()) to pick its causal fast path"
        ),
        "selection": (
            "EVTP (default options) on CPU on real random data; keep 1 selects nothing (no distances). The "
            "pairwise distances are a block-triangular Gram (about 0.58 of a full one) and are counted; the greedy "
            "farthest-first passes are element-wise and are not"
        ),
        "llm": (
            "one whole-sequence prefill, B = 1, as the release runs it and the predictor with share_prefix off. "
            "With share_prefix on (the predictor's default) the prompt's shared prefix runs once per frame: for "
            "one expression that changes no linear-layer FLOPs, only the counted attention (which ignores the "
            "causal mask), by 4 P S hidden per layer for a prefix of P and a suffix of S tokens"
        ),
        "fastv": (
            f"variants.fastv: FastV at layer K = {fastv_layer} (pipeline.model.token_pruning.fastv.run_llm_fastv): "
            "no selection "
            "before the LLM (the projector sees all N tokens), layers < K on the whole sequence, layers >= K with "
            "N - K_keep image tokens dropped; whole sequences, no shared prefix (FastV keeps different tokens per "
            "expression). Its selection column is the ranking (the last row's attention at layer K-1 recomputed "
            "from that layer's input: q of one row, k of every row; the k projection is nearly all of it, the "
            "row itself 2 H L d_h) plus the kept tokens' coverage diagnostics. The rotary embedding runs once per "
            "part, as in the predictor. For InstructSeg, the same LLM pass over its own sequence, the OVP still "
            "reading all N tokens of each reference frame"
        ),
        "speedups": (
            "speedup_vs_keep1 of a row and of its fastv and prune_references variants: against the row at keep 1 "
            "(nothing pruned, the predictor's defaults); of the release variant: against the release at keep 1"
        ),
        "msda_estimate": (
            f"about {msda / 1e12:.4f} TF by hand: encoder layers x queries x levels x points x channels x "
            f"{MSDA_FLOPS_PER_SAMPLE} (4-tap bilinear + weighted sum); Inferred, not in the totals"
        ),
    }


def hyperseg_notes(config: HyperSegConfig, per_token: float) -> dict[str, str]:
    return {
        "decoder": (
            f"seg_query_projector and SEG_token_projector, then {config.decoder.num_layers} masked-attention layers "
            f"with {config.decoder.num_layers + 1} mask predictions on the mask features"
        ),
        "fvp": "res3-res5 1x1 projections, 3 perceiver layers, the 512 -> LLM-width expansion, and read_state",
        "video": (
            "a video frame costs the same stages: one full forward per frame, B = 1, with the previous frame's "
            f"FVP latents instead of temporal_query (same shapes). Its wording adds about "
            f"{VIDEO_EXTRA_TEXT_TOKENS} text tokens (Inferred), ~{VIDEO_EXTRA_TEXT_TOKENS * per_token / 1e12:.3f} "
            f"TF of LLM per frame; rerun with --text-tokens {DEFAULT_TEXT_TOKENS + VIDEO_EXTRA_TEXT_TOKENS} for it"
        ),
    }


def instructseg_notes(config: InstructSegConfig, case: Case) -> dict[str, str]:
    ovp, vmtf, t = config.ovp, config.vmtf, case.reference_frames
    roles = "the image (its own reference frame)" if case.name == "image" else f"the key frame and {t} references"
    return {
        "decoder": (
            f"seg_query_projector, then {config.decoder.num_layers} masked-attention layers with "
            f"{config.decoder.num_layers + 1} mask predictions on the mask features; the SEG embedding it scores "
            "is the VMTF's (counted under vmtf)"
        ),
        "frames": (
            "image: the image is its own only reference frame (ovp_on_img), T_ref = 1. video: every frame is a key "
            f"frame with {config.reference_frames} reference frames (instructseg_predictor.reference_frames, the "
            "release's get_reference_idx_inorder); frames carry no state. Per key frame, amortised over the "
            "video: SigLIP, selection and the projector once (InstructSegPredictor.predict_video encodes every "
            "frame once and keeps it while a later key frame uses it as a reference); Swin and the pixel decoder "
            "once; the OVP, the LLM, the VMTF and the decoder once per expression (here one)"
        ),
        "projector": (
            "the kept K tokens for <image>, plus all N tokens again for the OVP (InstructSegPredictor._references: "
            "a second projector pass of N tokens per frame, also at keep 1, where the two are the same tokens); "
            "with prune_references the OVP reads the kept tokens' projection and there is one pass of K"
        ),
        "ovp": (
            f"per reference frame {ovp.depth} perceiver layers ({ovp.heads} x {ovp.dim_head} heads, ff x "
            f"{ovp.ff_mult}, width {ovp.dim}): {ovp.num_latents} latents attend to the frame's N_r projected tokens "
            f"+ the {case.layout.refer} instruction ids (+ [SEG]) + the latents; {t} frame(s) here. By default N_r = "
            "N, every token of each reference frame (not pruned); variants.prune_references has N_r = K"
        ),
        "vmtf": (
            f"text_vmtf_projector and origin_SEG_token_projector on the {case.layout.refer} <refer> states (+ their "
            f"mean), local_project on res5, {vmtf.depth} perceiver layers of width {vmtf.dim} (latents attend to "
            "the res5 tokens + the first latent), SEG_token_projector; per expression"
        ),
        "release": (
            f"variants.release: the released eval_seg encodes {roles} apart, SigLIP and the projector once per "
            f"role ({1 + t} passes per {'image' if case.name == 'image' else 'key frame'}; identical outputs, "
            "golden-tiny-instructseg README, numerics item 3); the key frame's tokens pruned as in the row"
        ),
        "prune_references": (
            "variants.prune_references: InstructSegPredictor.prune_references = True: each reference frame's K "
            "kept tokens (its own EVTP selection, made once per frame) feed the OVP instead of all N, and the "
            "second projector pass goes"
        ),
        "expressions": (
            "with E expressions per frame, SigLIP, selection, projector, Swin and the pixel decoder are shared; "
            "the OVP, the LLM, the VMTF and the decoder are per expression (share_prefix only shares the system "
            "text before <temporal>: the OVP tokens depend on the instruction)"
        ),
    }


def table_meta(
    preset_name: str,
    config: MaskLlmConfig,
    case: Case,
    shapes: dict,
    fixed: dict[str, Counted],
    per_keep: dict[float, dict],
    n: int,
    fastv_layer: int,
) -> dict:
    stages = stages_of(config)
    instructseg = isinstance(config, InstructSegConfig)
    smallest = min(per_keep)
    dropped = per_keep[1.0]["k"] - per_keep[smallest]["k"]
    # Marginal LLM cost of one image token (FLOPs), from keep 1 to the smallest keep.
    per_token = (per_keep[1.0]["llm"].flops - per_keep[smallest]["llm"].flops) / max(dropped, 1)
    msda = msda_estimate(config, shapes)
    # By aten op at keep 1 (InstructSeg's projector: the kept tokens' pass; the OVP's second pass is the same op).
    ops = {s: (per_keep[1.0]["counted"][s] if s in PER_KEEP_STAGES else fixed[s]).by_op for s in stages}
    if instructseg:
        source = (
            "model.md §1.10 prompts with §1.5's Inferred phi-2 counts. image: 36 text + 128 OVP + 1 + K image + ~15 "
            "text + refer + ~12 text + [SEG] + 100 queries + <|endoftext|> = 66 text, N = 1037 at keep 1 with refer "
            "14 (the same text chunks as HyperSeg's image prompt, <temporal> and <image> swapped). video: "
            f"{INSTRUCTSEG_VIDEO_TEXT_TOKENS} text = 66 + 8 (HyperSeg's video wording) + 3 ('There are reference "
            "frames and key frame ', 8 ids, for 'This is a frame ', 5), 512 OVP tokens: N = 1432 at keep 1 with refer "
            "14 (model.md §1.10 estimates ~1,436). golden-tiny-instructseg, with its own 385-id tokenizer: 135 text + "
            "11 refer (N 1103) and 160 text + 4 refer (N 1505)"
        )
    else:
        source = (
            "model.md §1.5 (Inferred phi-2 counts): 36 text + image + 1 + 128 temporal + ~15 text + refer + ~12 "
            "text + [SEG] + 100 queries + <|endoftext|>; refer 14 gives N = 1037 at keep 1. The golden-tiny run has "
            "133 text + 11 refer, but with its own 385-id tokenizer, not phi-2's"
        )
    notes = common_notes(config, msda, fastv_layer)
    notes.update(instructseg_notes(config, case) if instructseg else hyperseg_notes(config, per_token))
    return {
        "preset": preset_name,
        "family": "InstructSeg" if instructseg else "HyperSeg",
        "case": case.name,
        "batch": 1,
        "stages": list(stages),
        "image_tokens": n,
        "grid": list(config.vision.grid),
        "siglip_layers_run": config.vision.layers_run,
        "reference_frames": case.reference_frames,
        "sequence_layout": asdict(case.layout),
        "sequence_layout_source": source,
        "shapes": shapes,
        "fixed_tflops": sum(fixed[s].flops for s in stages if s in fixed and s not in PER_KEEP_STAGES) / 1e12,
        "msda_grid_sample_tflops_estimate": msda / 1e12,
        "llm_gflops_per_image_token": per_token / 1e9,
        "fastv_layer": fastv_layer,
        "ops_keep1": ops,
        "notes": notes,
    }


def cases(config: MaskLlmConfig, args: argparse.Namespace) -> list[Case]:
    queries = config.decoder.num_queries
    if isinstance(config, InstructSegConfig):
        latents, t = config.ovp.num_latents, config.reference_frames
        return [
            Case("image", SequenceLayout(args.text_tokens, args.refer_tokens, latents, queries), 1),
            Case("video", SequenceLayout(args.video_text_tokens, args.video_refer_tokens, t * latents, queries), t),
        ]
    return [Case("image", SequenceLayout(args.text_tokens, args.refer_tokens, config.fvp.num_latents, queries))]


def print_summary(table: dict) -> None:
    meta, rows = table["meta"], table["rows"]
    full = rows[0] if rows[0]["keep"] == 1.0 else None
    fixed = meta["fixed_tflops"]
    keep1 = None if full is None else full["total_tflops"]
    line = f"\nLLM: {meta['llm_gflops_per_image_token']:.2f} GFLOPs per image token removed. "
    line += f"The stages that do not depend on K ({fixed:.3f} TF)"
    if keep1 is not None:
        line += f" bound the speed-up at {keep1 / fixed:.2f}x (free LLM)"
    print(line)
    if meta["family"] == "InstructSeg" and full is not None:
        release = full["variants"]["release"]
        extra = release["total_tflops"] - full["total_tflops"]
        print(
            f"release: SigLIP + projector once per role ({1 + meta['reference_frames']} per "
            f"{'image' if meta['case'] == 'image' else 'key frame'}) cost {release['total_tflops']:.3f} TF at keep 1, "
            f"{extra:.3f} TF ({100 * extra / release['total_tflops']:.1f}%) more than once per frame"
        )
        against = ", ".join(f"{r['speedup_vs_release_keep1']:.2f}x at keep {r['keep']}" for r in rows)
        print(f"against the release at keep 1 (nothing pruned, SigLIP per role): {against}")
    print(
        f"not counted: element-wise ops, MSDA grid_sample (~{meta['msda_grid_sample_tflops_estimate']:.4f} TF by "
        "hand), post-processing"
    )
    if meta["family"] == "HyperSeg":
        print("video: one full forward per frame, the same stages (see notes.video)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        keeps = [float(k) for k in args.keeps.split(",")]
    except ValueError as error:
        raise SystemExit(f"--keeps must be comma-separated numbers: {error}") from None
    tables = []
    for preset_name in args.preset:
        config = preset(preset_name)
        n = config.vision.grid[0] * config.vision.grid[1]
        for keep in keeps:
            try:
                budget(keep, n)
            except ValueError as error:
                raise SystemExit(f"--keeps: {error}") from None
        # The tiny presets' LLM has 2 layers: FastV's default K = 2 becomes 1 there.
        fastv_layer = min(FASTV_LAYER, config.llm.num_layers - 1) if args.fastv_layer is None else args.fastv_layer
        try:
            check_layer(fastv_layer, config.llm.num_layers)
        except ValueError as error:
            raise SystemExit(f"--fastv-layer: {error}") from None
        model = meta_model(config)
        encoder = encoder_stages(model)
        generator = torch.Generator().manual_seed(args.seed)
        features = torch.randn(1, n, config.vision.hidden_size, generator=generator)
        selections = {}
        for case in cases(config, args):
            fixed, shapes, per_keep = count_keeps(model, case, features, keeps, fastv_layer, encoder, selections)
            rows = build_rows(keeps, per_keep, case, fastv_layer)
            meta = table_meta(preset_name, config, case, shapes, fixed, per_keep, n, fastv_layer)
            table = {"meta": meta, "rows": rows}
            print_table(rows, describe(config, preset_name, case), stages_of(config))
            print_variants(rows, fastv_layer)
            print_summary(table)
            tables.append(table)

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "presets": args.preset,
        "keeps": keeps,
        "batch": 1,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "counter": "torch.utils.flop_counter.FlopCounterMode",
        "selection": {"method": "evtp", "features": f"torch.randn(1, N, D), seed {args.seed}, float32, CPU"},
        "k_rule": "pipeline.pruning.budget: K = min(N, max(1, round(keep * N))), half to even",
        "per": "one expression on one frame (an image, or a video key frame with its reference frames), B = 1",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "tables": tables}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
