"""The API the pipeline calls: frames and expressions in, masks with their token selections out.

One frame batch is encoded once (SigLIP, token selection, projector, Swin, pixel decoder); each
expression then runs its own LLM prefill and mask decoding. Video frames go in order, each
expression carrying its FVP state from frame to frame, as HyperSeg's ReVOS evaluation does
(congvvc/HyperSeg@5cfcf52:eval/eval_ReasonVOS.py; model.md §1.9).
"""

import functools
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...config import MODEL_METHODS, PruningConfig
from ...pruning import Selection
from ..config import preset
from ..parts.llm import Assembled, LlmOutput, assemble, run_llm_shared
from ..parts.mask_decoder import MaskDecoderOutput
from ..parts.mask_llm import MaskLlm
from ..parts.pixel_decoder import PixelDecoderOutput
from ..parts.postprocess import best_query, upsample_to_original
from ..parts.preprocess import siglip_view, swin_view
from ..parts.prompt import (
    build_prompt,
    build_tiny_tokenizer,
    format_instruction,
    load_tokenizer,
    refer_ids,
    tokenize_prompt,
)
from ..token_pruning.fastv import run_llm_pruned
from ..token_pruning.token_selection import kept_selection, run_vision, select_visual_tokens
from .model import HyperSeg

# Timed stages, in execution order; the FLOP benchmark's stages (selection includes the projector). FastV ranks
# and drops inside "llm"; its per-expression coverage diagnostics count as "selection".
STAGES = ("siglip", "selection", "swin", "pixel_decoder", "fvp", "llm", "decoder", "postprocess")


def inference(method):
    """Run a predictor step under ``torch.inference_mode``, unless its model is training: the trainer runs the
    very same steps with gradients (``pipeline.train``), so there is one forward pass for both."""

    @functools.wraps(method)
    def step(self, *args, **kwargs):
        if self.model.training:
            return method(self, *args, **kwargs)
        with torch.inference_mode():
            return method(self, *args, **kwargs)

    return step


@dataclass
class FrameTokens:
    """The LLM's view of a batch of frames: SigLIP features, the selection and the projected kept tokens.

    Attributes:
        features: ``(B, N, D)`` SigLIP features of every token (coverage is measured on them).
        selection: kept indices ``(B, K)`` and coverage diagnostics.
        image_tokens: ``(B, K, hidden)`` projected kept tokens.
        seconds: time per stage for the batch (siglip, selection).
    """

    features: torch.Tensor
    selection: Selection
    image_tokens: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class EncodedFrames:
    """What every expression of a frame shares: computed once per frame.

    Attributes:
        features: ``(B, N, D)`` SigLIP features of every token.
        selection: kept indices ``(B, K)`` and coverage diagnostics.
        image_tokens: ``(B, K, hidden)`` projected kept tokens.
        swin: Swin res2-res5 of each frame.
        pixel: pixel-decoder outputs of each frame.
        resized_hw, original_hw: per frame, for post-processing.
        seconds: time per stage for the batch.
    """

    features: torch.Tensor
    selection: Selection
    image_tokens: torch.Tensor
    swin: dict[str, torch.Tensor]
    pixel: PixelDecoderOutput
    resized_hw: list[tuple[int, int]]
    original_hw: list[tuple[int, int]]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Prefill:
    """The LLM pass of a batch of expressions.

    Attributes:
        owner: per expression, the index of its frame in the batch.
        llm: the hidden states read back (seg queries, pooled refer span, temporal tokens).
        next_temporal: ``(E, latents, fvp_dim)`` FVP latents for the next video frame (None for a model that
            carries no state, InstructSeg).
        seconds: time of the FVP and of the LLM.
        kept: FastV only: per expression, ``(K,)`` int64 kept raster indices; None when the frame's selection holds.
    """

    owner: list[int]
    llm: LlmOutput
    next_temporal: torch.Tensor | None
    seconds: dict[str, float] = field(default_factory=dict)
    kept: list[torch.Tensor] | None = None


@dataclass
class Segmentation:
    """One expression on one frame.

    Attributes:
        mask: ``(H, W)`` bool at the original resolution (the top-1 query's ``logits > 0``).
        score: the top-1 score, ``sigmoid(SEG) x mean mask confidence``.
        seg_score, mask_score, stability: its quality signals (``postprocess.Quality``).
        query: the top-1 query index.
        kept: ``(K,)`` int64 kept token indices of the frame (of this expression for FastV).
        feature_radius, grid_radius, lam: the coverage diagnostics of ``kept``.
        sequence_length: LLM tokens of this expression's prefill (at its input, before FastV drops any).
        seconds: per-stage time of the call, shared by the call's expressions.
        queries_scored: decoder queries post-processing brought to the original size (``best_query``).
    """

    mask: np.ndarray
    score: float
    seg_score: float
    mask_score: float
    stability: float
    query: int
    kept: np.ndarray
    feature_radius: float
    grid_radius: float
    lam: float
    sequence_length: int
    seconds: dict[str, float]
    queries_scored: int = 0


class HyperSegPredictor:
    """HyperSeg with its tokenizer, preprocessing and token pruning.

    ``share_prefix`` (on by default) runs the LLM prefix that every expression of a frame has in common
    once per frame and each expression only its suffix against the cached keys and values (and the FVP
    once per frame when no state is carried); off, every expression runs its whole sequence, as the
    release does. FastV (``pruning.method="fastv"``) keeps different tokens per expression, so it always runs
    whole sequences and the FVP per expression, as with ``share_prefix`` off.
    """

    model_class: type[MaskLlm] = HyperSeg
    family = "HyperSeg"  # the prompt wording (prompt.build_prompt)
    stages = STAGES

    def __init__(self, model: MaskLlm, tokenizer, pruning: PruningConfig | None = None, *, share_prefix: bool = True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pruning = pruning or PruningConfig()
        self.share_prefix = share_prefix
        # Training's grounding term reads the LLM's states at the visual tokens (``LlmOutput.image``).
        self.image_states = False
        self.device = model.seg_query.device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad)
        self._prompts: dict[str, list[int]] = {}

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        pruning: PruningConfig | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        **config_overrides,
    ) -> "HyperSegPredictor":
        """Model and tokenizer from one checkpoint directory in the released layout (local files only)."""
        model = cls.model_class.from_pretrained(
            directory, dtype=dtype, device=device, attn_implementation=attn_implementation, **config_overrides
        )
        return cls(model, load_tokenizer(directory), pruning)

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        pruning: PruningConfig | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
    ) -> "HyperSegPredictor":
        """A preset (``tiny``, ``bench``, ``hyperseg-3b``) with seeded random weights and the small local tokenizer.

        For tests, demos and timing: the masks mean nothing. Real weights come from ``from_pretrained``.
        """
        config = preset(name)
        if not isinstance(config, cls.model_class.config_class):
            raise ValueError(f"preset {name!r} is not a {cls.model_class.__name__} preset (see pipeline.model.load)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                model = cls.model_class(config, attn_implementation)
        with tempfile.TemporaryDirectory() as directory:
            tokenizer = load_tokenizer(build_tiny_tokenizer(directory))
        return cls(model, tokenizer, pruning)

    def compile(self, **options) -> None:
        """``torch.compile`` the SigLIP tower and the LLM, the two transformer stacks that do most of the work.

        ``dynamic=True``: the LLM's sequence length changes with the kept tokens and the expressions, and a
        static graph would recompile for each. The first calls pay the compilation (about 80 s for the tiny
        preset on 2 CPU cores); outputs equal the eager ones up to float rounding. ``options`` go to
        ``torch.compile`` (e.g. ``mode="max-autotune"``).
        """
        self.model.vision = torch.compile(self.model.vision, dynamic=True, **options)
        self.model.llm = torch.compile(self.model.llm, dynamic=True, **options)

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def prompt_ids(self, task: str) -> list[int]:
        """The tokenised template of a task (the instruction fills ``<refer>`` separately)."""
        if task not in self._prompts:
            self._prompts[task] = tokenize_prompt(self.tokenizer, build_prompt(task, self.family))
        return self._prompts[task]

    @inference
    def encode(self, images: Sequence[np.ndarray | Image.Image]) -> EncodedFrames:
        """Encode a batch of RGB frames once: SigLIP, selection, projector, Swin and pixel decoder."""
        return self.encode_masks(images, self.encode_tokens(images))

    @inference
    def encode_tokens(self, images: Sequence[np.ndarray | Image.Image]) -> FrameTokens:
        """SigLIP, token selection and projector of a batch of RGB frames."""
        if len(images) == 0:
            raise ValueError("encode needs at least one frame")
        pre = self.model.config.preprocess
        clip = torch.stack([siglip_view(im, pre.siglip_size, pre.siglip_mean, pre.siglip_std) for im in images])
        seconds = {}
        start = self._sync()
        vision = run_vision(self.model.vision, clip.to(self.device, self.model.seg_query.dtype), self.pruning.method)
        seconds["siglip"] = (t := self._sync()) - start
        tokens = select_visual_tokens(vision, self.model.grid, self.pruning)
        image_tokens = self.model.projector(tokens.kept)
        seconds["selection"] = self._sync() - t
        return FrameTokens(
            features=vision.features, selection=tokens.selection, image_tokens=image_tokens, seconds=seconds
        )

    @inference
    def encode_masks(self, images: Sequence[np.ndarray | Image.Image], tokens: FrameTokens) -> EncodedFrames:
        """The mask branch of the same frames (Swin and pixel decoder), joined with their ``tokens``."""
        pre = self.model.config.preprocess
        views = [swin_view(im, pre.canvas, pre.pixel_mean, pre.pixel_std, pre.pad_value) for im in images]
        original_hw = [tuple(np.asarray(im).shape[:2]) for im in images]
        seconds = dict(tokens.seconds)
        start = self._sync()
        swin = self.model.encode_swin(torch.stack([v.pixels for v in views]).to(self.device))
        seconds["swin"] = (t := self._sync()) - start
        pixel = self.model.pixel_decoder(swin)
        seconds["pixel_decoder"] = self._sync() - t
        return EncodedFrames(
            features=tokens.features,
            selection=tokens.selection,
            image_tokens=tokens.image_tokens,
            swin=swin,
            pixel=pixel,
            resized_hw=[v.resized_hw for v in views],
            original_hw=original_hw,
            seconds=seconds,
        )

    @inference
    def prefill(
        self,
        encoded: EncodedFrames,
        expressions: Sequence[Sequence[str]],
        task: str = "referring",
        temporal: torch.Tensor | None = None,
    ) -> Prefill:
        """The FVP and one LLM prefill per expression (batched), for every frame's expressions.

        Args:
            encoded: from ``encode``.
            expressions: per frame, its expressions (raw text; worded as the release's test sets do by
                ``prompt.format_instruction``); at least one per frame.
            task: prompt wording: ``referring``, ``reasoning`` or ``video``.
            temporal: ``(E, latents, fvp_dim)`` FVP latents per expression (all frames' expressions in
                order), carried from the previous video frame; None starts from the learned query.
        """
        b = encoded.image_tokens.shape[0]
        owner, texts = self._expressions(encoded, expressions, task)
        if temporal is not None and temporal.shape[0] != len(texts):
            raise ValueError(f"temporal state has {temporal.shape[0]} rows for {len(texts)} expressions")
        model, frames = self.model, torch.tensor(owner, device=self.device)
        swin = [encoded.swin[k] for k in ("res3", "res4", "res5")]
        # The state read at the <temporal> positions precedes the instruction in a causal LLM, so every
        # expression of a frame carries the same one (bit-identical when shared); then the FVP and the whole
        # prompt up to <refer> are the frame's, computed once. States that differ fall back to per expression.
        state = None if temporal is None else _one_per_frame(temporal, owner, b)
        shared = self._shares_prefix() and (temporal is None or state is not None)
        start = self._sync()
        if shared:
            fvp_tokens = model.fvp(*swin, state).index_select(0, frames)
        else:
            fvp_tokens = model.fvp(*(x.index_select(0, frames) for x in swin), temporal)
        fvp_done = self._sync()
        sequences = [
            self._sequence(encoded, task, f, fvp_tokens[e], refer_ids(self.tokenizer, texts[e]))
            for e, f in enumerate(owner)
        ]
        out, kept = self._run_llm(encoded, sequences, owner, int(sequences[0].refer[0]) if shared else None)
        next_temporal = model.fvp.read_state(out.temporal)
        seconds = {"fvp": fvp_done - start, "llm": self._sync() - fvp_done}
        return Prefill(owner=owner, llm=out, next_temporal=next_temporal, seconds=seconds, kept=kept)

    def _expressions(
        self, encoded: EncodedFrames, expressions: Sequence[Sequence[str]], task: str
    ) -> tuple[list[int], list[str]]:
        """Per expression, its frame's index and its instruction text; a non-empty list per frame is required."""
        b = encoded.image_tokens.shape[0]
        if len(expressions) != b or any(len(e) == 0 for e in expressions):
            counts = [len(e) for e in expressions]
            raise ValueError(f"need a non-empty expression list for each of the {b} frames, got {counts}")
        owner = [i for i, exprs in enumerate(expressions) for _ in exprs]
        return owner, [format_instruction(task, text) for exprs in expressions for text in exprs]

    def _sequence(
        self, encoded: EncodedFrames, task: str, frame: int, temporal: torch.Tensor, refer: list[int]
    ) -> Assembled:
        """One expression's LLM input: the task's template around its frame's tokens, ``temporal`` and ``refer``."""
        grid = self.model.config.vision.grid
        return assemble(
            self.prompt_ids(task),
            self.model.llm.embed_tokens,
            image=encoded.image_tokens[frame],
            temporal=temporal,
            refer_ids=refer,
            seg_query=self.model.seg_query,
            pad_token_id=self.pad_token_id,
            kept=encoded.selection.indices[frame],
            n_image=grid[0] * grid[1],
            position_policy=self.pruning.position_ids,
        )

    def _shares_prefix(self) -> bool:
        """Whether a frame's common prefix runs once: not for FastV, whose kept tokens are each expression's."""
        return self.share_prefix and self.pruning.method not in MODEL_METHODS

    def _run_llm(
        self, encoded: EncodedFrames, sequences: list[Assembled], owner: list[int], prefix: int | None
    ) -> tuple[LlmOutput, list[torch.Tensor] | None]:
        """Every expression's prefill, the first ``prefix`` tokens once per frame (None: whole sequences, and
        FastV's pruning inside); with the kept tokens per expression when FastV chose them."""
        if prefix is not None:
            out = run_llm_shared(self.model.llm, sequences, owner, prefix=prefix, image_states=self.image_states)
            return out, None
        if self.image_states:
            raise ValueError("image states are read with the shared prefix only (share_prefix=True, no FastV)")
        pruned = run_llm_pruned(self.model.llm, sequences, self.pruning, encoded.selection.indices, owner)
        return pruned.llm, pruned.kept

    @inference
    def decode(self, encoded: EncodedFrames, prefill: Prefill) -> MaskDecoderOutput:
        """Mask and SEG logits of every expression, on its frame's pixel-decoder features."""
        return self.model.decode_masks(
            prefill.llm.seg, prefill.llm.refer, per_expression(encoded.pixel, prefill.owner)
        )

    def full_resolution(self, encoded: EncodedFrames, frame: int, pred_masks: torch.Tensor) -> torch.Tensor:
        """``(Q, h, w)`` decoder logits of one expression -> ``(Q, H, W)`` at its frame's original size."""
        canvas = self.model.config.preprocess.canvas
        return upsample_to_original(pred_masks.float(), canvas, encoded.resized_hw[frame], encoded.original_hw[frame])

    def segment(
        self,
        encoded: EncodedFrames,
        expressions: Sequence[Sequence[str]],
        task: str = "referring",
        temporal: torch.Tensor | None = None,
    ) -> tuple[list[list[Segmentation]], torch.Tensor]:
        """Segment each frame's expressions (arguments as ``prefill``).

        Returns:
            Per frame, per expression, the segmentation; and the FVP latents to carry to the next frame.
        """
        prefill = self.prefill(encoded, expressions, task, temporal)
        start = self._sync()
        decoded = self.decode(encoded, prefill)
        seconds = {**encoded.seconds, **prefill.seconds, "decoder": (t := self._sync()) - start}
        canvas = self.model.config.preprocess.canvas
        with torch.inference_mode():
            chosen = [
                best_query(
                    decoded.pred_masks[e].float(),
                    decoded.pred_seg_logits[e].float(),
                    canvas,
                    encoded.resized_hw[f],
                    encoded.original_hw[f],
                )
                for e, f in enumerate(prefill.owner)
            ]
        seconds["postprocess"] = (t2 := self._sync()) - t
        sel, rows = encoded.selection, prefill.owner
        if prefill.kept is not None:  # FastV: each expression's own tokens, measured on its frame's features
            features = encoded.features.index_select(0, torch.tensor(prefill.owner, device=self.device))
            sel, rows = kept_selection(features, torch.stack(prefill.kept), self.model.grid), range(len(rows))
            seconds["selection"] += self._sync() - t2
        results: list[list[Segmentation]] = [[] for _ in range(encoded.image_tokens.shape[0])]
        for e, (f, r) in enumerate(zip(prefill.owner, rows, strict=True)):
            results[f].append(
                Segmentation(
                    mask=chosen[e].mask.cpu().numpy(),
                    score=chosen[e].score,
                    seg_score=chosen[e].quality.seg_score,
                    mask_score=chosen[e].quality.mask_score,
                    stability=chosen[e].quality.stability,
                    query=chosen[e].query,
                    kept=sel.indices[r].cpu().numpy(),
                    feature_radius=float(sel.feature_radius[r]),
                    grid_radius=float(sel.grid_radius[r]),
                    lam=float(sel.lam[r]),
                    sequence_length=int(prefill.llm.lengths[e]),
                    seconds=seconds,
                    queries_scored=chosen[e].scored,
                )
            )
        return results, prefill.next_temporal

    def predict(
        self, image: np.ndarray | Image.Image, expressions: Sequence[str], task: str = "referring"
    ) -> list[Segmentation]:
        """One image, one or more expressions."""
        results, _ = self.segment(self.encode([image]), [list(expressions)], task)
        return results[0]

    def predict_video(
        self, frames: Sequence[np.ndarray | Image.Image], expressions: Sequence[str], task: str = "video"
    ) -> list[list[Segmentation]]:
        """A video in frame order; each expression's FVP state is carried from frame to frame.

        Returns:
            Per frame, per expression.
        """
        if len(frames) == 0:
            raise ValueError("predict_video needs at least one frame")
        state, out = None, []
        for frame in frames:
            results, state = self.segment(self.encode([frame]), [list(expressions)], task, state)
            out.append(results[0])
        return out


def per_expression(pixel: PixelDecoderOutput, owner: list[int]) -> PixelDecoderOutput:
    """A frame batch's pixel-decoder outputs repeated for each expression (``owner[e]`` is its frame)."""
    frames = torch.tensor(owner, device=pixel.mask_features.device)
    return PixelDecoderOutput(
        mask_features=pixel.mask_features.index_select(0, frames),
        multi_scale_features=tuple(m.index_select(0, frames) for m in pixel.multi_scale_features),
    )


def _one_per_frame(temporal: torch.Tensor, owner: list[int], frames: int) -> torch.Tensor | None:
    """``(F, ...)`` the state of each frame when all its expressions carry the same one, else None."""
    owners = torch.tensor(owner, device=temporal.device)
    first = torch.stack([torch.nonzero(owners == f)[0, 0] for f in range(frames)])
    rows = temporal.index_select(0, first)
    return rows if torch.equal(rows.index_select(0, owners), temporal) else None
