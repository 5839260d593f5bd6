"""InstructSeg's predictor: the same API as HyperSeg's, with reference frames in place of a carried state.

Each video frame is a key frame (its tokens fill ``<image>``) with 4 reference frames (their tokens feed the OVP,
whose output fills ``<temporal>``); frames do not depend on each other (congvvc/InstructSeg@0134314
``eval_revos.py``, ``inference_revos``; golden-tiny-instructseg/README.md "Video"). An image is its own only
reference frame. SigLIP runs once per video frame, whatever roles the frame plays; the release runs it once per
role (up to five times per frame, with identical results).
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ...pruning import Selection
from ..hyperseg.predictor import (
    EncodedFrames,
    FrameTokens,
    HyperSegPredictor,
    Prefill,
    Segmentation,
    inference,
    per_expression,
)
from ..parts.mask_decoder import MaskDecoderOutput
from ..parts.prompt import refer_ids
from .model import InstructSeg

# Timed stages, in execution order (``HyperSegPredictor``'s with the OVP for the FVP; the VMTF is in "decoder").
STAGES = ("siglip", "selection", "swin", "pixel_decoder", "ovp", "llm", "decoder", "postprocess")


def reference_frames(key: int, length: int, count: int = 4) -> list[int]:
    """The reference frames of key frame ``key`` in a video of ``length`` frames, in increasing order.

    For ``length > count`` this is the release's ``get_reference_idx_inorder``: the window of ``count + 1``
    consecutive frames centred on the key frame, shifted inward at the ends of the video, without the key frame.

    Shorter videos break the released rule (indices past the end, or negative ones that wrap). Here they get the
    other frames, cycled in order until there are ``count``, then sorted (e.g. ``length`` 3, key 1: [0, 0, 2, 2]);
    a one-frame video is its own reference, as an image is. The OVP always sees ``count`` frames, so the LLM
    sequence keeps the layout the model was trained on.
    """
    if not 0 <= key < length:
        raise ValueError(f"key frame {key} is outside a {length}-frame video")
    if count < 1:
        raise ValueError(f"need at least one reference frame, got {count}")
    if length > count:
        start = min(max(key - count // 2, 0), length - count - 1)
        return [i for i in range(start, start + count + 1) if i != key]
    others = [i for i in range(length) if i != key] or [key]
    return sorted(others[i % len(others)] for i in range(count))


@dataclass
class KeyFrames(EncodedFrames):
    """``EncodedFrames`` of key frames, with the tokens the OVP reads for each.

    Attributes:
        references: ``(B, T_ref, N_r, hidden)`` projected SigLIP tokens of each key frame's reference frames
            (all 729, or the kept ones with ``pruning.references``).
    """

    references: torch.Tensor | None = None


def take(tokens: FrameTokens, rows: Sequence[int]) -> FrameTokens:
    """The frames ``rows`` of a ``FrameTokens`` batch."""
    index = torch.tensor(list(rows), device=tokens.features.device)
    fields = {f.name: getattr(tokens.selection, f.name) for f in dataclasses.fields(Selection)}
    selection = Selection(**{k: None if v is None else v.index_select(0, index) for k, v in fields.items()})
    return FrameTokens(
        features=tokens.features.index_select(0, index),
        selection=selection,
        image_tokens=tokens.image_tokens.index_select(0, index),
        seconds=dict(tokens.seconds),
    )


class InstructSegPredictor(HyperSegPredictor):
    """InstructSeg with its tokenizer, preprocessing and token pruning.

    The key frame's tokens are pruned by ``pruning``; with ``pruning.references`` the reference frames' tokens are
    pruned the same way before the OVP (off by default: the OVP sees all 729); FastV prunes the key frame's tokens
    inside the LLM and leaves the OVP's alone. ``share_prefix`` runs the system text before ``<temporal>`` once
    per frame; everything after it depends on the instruction (the OVP reads it), and FastV runs whole sequences.
    """

    model_class = InstructSeg
    family = "InstructSeg"
    stages = STAGES

    def _references(self, tokens: FrameTokens) -> torch.Tensor:
        """``(B, N_r, hidden)`` what the OVP reads of each frame: its kept tokens or, by default, all of them."""
        if self.pruning.references:
            return tokens.image_tokens
        return self.model.projector(tokens.features)

    @inference
    def encode(self, images: Sequence[np.ndarray | Image.Image]) -> KeyFrames:
        """Encode a batch of images, each its own reference frame: SigLIP once serves the OVP and ``<image>``."""
        tokens = self.encode_tokens(images)
        return self.encode_key_frames(images, tokens, self._references(tokens)[:, None])

    @inference
    def encode_key_frames(
        self,
        images: Sequence[np.ndarray | Image.Image],
        tokens: FrameTokens,
        references: torch.Tensor,
    ) -> KeyFrames:
        """Key frames with their ``tokens`` (from ``encode_tokens``) and their references' OVP inputs."""
        encoded = self.encode_masks(images, tokens)
        return KeyFrames(**vars(encoded), references=references)

    @inference
    def prefill(
        self,
        encoded: KeyFrames,
        expressions: Sequence[Sequence[str]],
        task: str = "referring",
        temporal: torch.Tensor | None = None,
    ) -> Prefill:
        """The OVP and one LLM prefill per expression (batched), for every key frame's expressions.

        Arguments as ``HyperSegPredictor.prefill``; ``temporal`` must be None (InstructSeg carries no state).
        """
        if temporal is not None:
            raise ValueError("InstructSeg carries no state from frame to frame: temporal must be None")
        if not isinstance(encoded, KeyFrames) or encoded.references is None:
            raise ValueError("InstructSeg needs key frames with reference tokens (InstructSegPredictor.encode)")
        owner, texts = self._expressions(encoded, expressions, task)
        model = self.model
        refer = [refer_ids(self.tokenizer, text) for text in texts]
        start = self._sync()
        # The OVP reads the instruction, so its tokens are each expression's own.
        ovp_tokens = [
            model.ovp(encoded.references[f], model.llm.embed_tokens(torch.tensor(refer[e], device=self.device)))
            for e, f in enumerate(owner)
        ]
        ovp_done = self._sync()
        sequences = [self._sequence(encoded, task, f, ovp_tokens[e], refer[e]) for e, f in enumerate(owner)]
        # Only the system text before <temporal> is common to a frame's expressions.
        prefix = int(sequences[0].temporal[0]) if self._shares_prefix() else None
        out, kept = self._run_llm(encoded, sequences, owner, prefix)
        seconds = {"ovp": ovp_done - start, "llm": self._sync() - ovp_done}
        return Prefill(owner=owner, llm=out, next_temporal=None, seconds=seconds, kept=kept)

    @inference
    def decode(self, encoded: EncodedFrames, prefill: Prefill) -> MaskDecoderOutput:
        """The VMTF's SEG embeddings, then mask and SEG logits of every expression."""
        frames = torch.tensor(prefill.owner, device=self.device)
        seg = self.model.seg_embeddings(prefill.llm.refer_states, encoded.swin["res5"].index_select(0, frames))
        return self.model.decode_masks(prefill.llm.seg, seg, per_expression(encoded.pixel, prefill.owner))

    @inference
    def predict_video(
        self, frames: Sequence[np.ndarray | Image.Image], expressions: Sequence[str], task: str = "video"
    ) -> list[list[Segmentation]]:
        """A video, each frame a key frame with its reference frames (``reference_frames``).

        SigLIP, the selection and the projector run once per frame; a frame's results are kept only while a
        later key frame can still use it as a reference (at most ``2 * count + 1`` frames are held).

        Returns:
            Per frame, per expression.
        """
        if len(frames) == 0:
            raise ValueError("predict_video needs at least one frame")
        count = self.model.config.reference_frames
        cache: dict[int, tuple[FrameTokens, torch.Tensor]] = {}
        out = []
        for key in range(len(frames)):
            refs = reference_frames(key, len(frames), count)
            needed = sorted({key, *refs})
            for old in [i for i in cache if i < needed[0]]:
                del cache[old]
            missing = [i for i in needed if i not in cache]
            spent = {"siglip": 0.0, "selection": 0.0}  # the time goes to the key frame at which it is spent
            if missing:
                batch = self.encode_tokens([frames[i] for i in missing])
                ovp_inputs = self._references(batch)
                for row, i in enumerate(missing):
                    cache[i] = (take(batch, [row]), ovp_inputs[row])
                spent = batch.seconds
            tokens = dataclasses.replace(cache[key][0], seconds=spent)
            references = torch.stack([cache[i][1] for i in refs])[None]  # (1, T_ref, N_r, hidden)
            encoded = self.encode_key_frames([frames[key]], tokens, references)
            results, _ = self.segment(encoded, [list(expressions)], task)
            out.append(results[0])
        return out
