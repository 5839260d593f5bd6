"""The training loop: AdamW with warm-up and a cosine schedule, resumable, with progress, curves and a checkpoint.

A run folder holds:

- ``tokenizer/``: the tokenizer (``pipeline.train.tokenizer``), built once;
- ``state/``: what a resumed run needs (``model.safetensors``, ``optimizer.safetensors``, ``progress.json`` with
  the step, the elapsed training time, the loss history and the held-out evaluations), rewritten every
  ``save_every`` steps by rename, so a killed run resumes from its last save with the same data (each step's
  samples are fixed by its index, ``data.make_batch``);
- ``checkpoint/``: the trained model in the released layout (``pipeline.model.save``), loadable by
  ``from_pretrained`` like any other;
- ``curve.png``: training loss, running IoU and held-out gIoU against the step.
"""

import dataclasses
import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import PruningConfig
from ..model.config import preset
from ..model.hyperseg.model import HyperSeg
from ..model.hyperseg.predictor import HyperSegPredictor
from ..model.parts.prompt import build_tiny_tokenizer, load_tokenizer
from .data import Batch, Batches, DataSettings
from .evaluate import evaluate_images, heldout_images
from .loss import canvas_targets, criterion, grounding_loss, token_cover, top1_iou
from .tokenizer import build_synth_tokenizer

logger = logging.getLogger(__name__)
# The per-coordinate RMS of the projected image tokens at initialisation (norm 2.4 over 128 dims, ``synth``).
EMBED_STD = 0.2
TOKENIZERS = {"synth": build_synth_tokenizer, "tiny": build_tiny_tokenizer}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved with its state; a resumed run must match it)."""

    preset: str = "synth"
    tokenizer: str = "synth"  # "synth" (pipeline.train.tokenizer) or "tiny" (the tiny presets' 385 ids)
    steps: int = 3200
    lr: float = 2e-4
    min_lr_ratio: float = 0.05  # the cosine schedule ends at lr * this
    warmup: int = 150
    weight_decay: float = 0.05
    clip_grad: float = 1.0
    instance_weight: float = 0.0  # the loss's instance term (pipeline.train.loss); 0 bound words better in short runs
    choice_weight: float = 2.0  # the loss's choice term (pipeline.train.loss)
    # The loss's grounding term (pipeline.train.loss). Weight 1 against 0 in 500-step runs (48 held-out images):
    # gIoU 0.279 against 0.255, and keeping 1 visual token cost 0.031 gIoU against 0.008.
    ground_weight: float = 1.0
    seed: int = 0
    data: DataSettings = field(default_factory=DataSettings)
    eval_every: int = 400
    eval_images: int = 32
    save_every: int = 50

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "TrainConfig":
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["data"].items()}  # JSON has no tuples
        # Runs saved before the grounding term had none.
        return cls(**{"ground_weight": 0.0, **raw, "data": DataSettings(**data)})


@dataclass
class Progress:
    step: int = 0
    seconds: float = 0.0  # training time so far, over every session of the run
    history: list[dict] = field(default_factory=list)  # per step: loss terms, running IoU, lr
    evals: list[dict] = field(default_factory=list)  # held-out gIoU / cIoU at some steps
    sessions: list[dict] = field(default_factory=list)  # per start or resume: the step, the commit, the time


def schedule(config: TrainConfig):
    """Linear warm-up to ``lr``, then a cosine down to ``lr * min_lr_ratio``, as a LambdaLR factor."""

    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        t = (step - config.warmup) / max(config.steps - config.warmup, 1)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def build(config: TrainConfig, folder: Path) -> HyperSegPredictor:
    """A freshly initialised model (seeded) with the run's tokenizer."""
    tokenizer_dir = folder / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        if config.tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {config.tokenizer!r}; expected one of {sorted(TOKENIZERS)}")
        TOKENIZERS[config.tokenizer](tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    model_config = preset(config.preset)
    if len(tokenizer) > model_config.llm.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} ids, the {config.preset} preset's LLM only "
            f"{model_config.llm.vocab_size}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = HyperSeg(model_config)
        # Phi's init (std 0.02) gives token embeddings and the learned seg queries a tenth of the norm of the
        # projected image tokens and a thirtieth of the FVP tokens', so the instruction is drowned out in every
        # attention sum: measured, all seg-query states were the same whatever the words (cosine 1.000) and every
        # expression of an image chose the same object. At the image tokens' scale the words count from step 0.
        with torch.no_grad():
            torch.nn.init.normal_(model.llm.embed_tokens.weight, std=EMBED_STD)
            torch.nn.init.normal_(model.seg_query, std=EMBED_STD)
    return HyperSegPredictor(model, tokenizer, PruningConfig())


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings and the learned queries (1-D or embedding tables)."""
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        no_decay = parameter.ndim < 2 or "embed" in name or name in ("seg_query",) or "temporal_query" in name
        (plain if no_decay else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def batch_loss(
    predictor: HyperSegPredictor,
    batch: Batch,
    instance_weight: float = 0.0,
    choice_weight: float = 0.0,
    ground_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Mean loss over the batch's expression-frames, the last layer's terms, and each one's IoU ``(n, 2)``:
    the top-1 query's and the best query's (``top1_iou``). A grounding weight needs ``predictor.image_states``."""
    if ground_weight > 0 and not predictor.image_states:
        raise ValueError("the grounding term reads the LLM's image states: set predictor.image_states = True")
    canvas = predictor.model.config.preprocess.canvas
    grid = predictor.model.config.vision.grid
    total, count, terms, ious = torch.zeros(()), 0, {}, []

    def add(encoded, prefill, masks, objects, named):
        """``objects``: per frame of ``encoded``, its objects' masks; ``named``: per expression."""
        nonlocal total, count, terms
        output = predictor.decode(encoded, prefill)
        resized = [encoded.resized_hw[f] for f in prefill.owner]
        per_frame = [torch.from_numpy(o) for o in objects]
        targets = canvas_targets(
            [torch.from_numpy(m) for m in masks], resized, canvas, [per_frame[f] for f in prefill.owner], named
        )
        loss, terms = criterion(output, targets, instance_weight, choice_weight)
        if ground_weight > 0:
            kept = encoded.selection.indices
            cover = torch.stack(
                [token_cover(torch.from_numpy(m), grid, kept[f]) for m, f in zip(masks, prefill.owner, strict=True)]
            )
            seg = torch.stack([states[-1] for states in prefill.llm.refer_states])  # [SEG] ends the <refer> span
            ground = grounding_loss(seg, prefill.llm.image, cover)
            loss, terms = loss + ground_weight * ground, {**terms, "ground": float(ground.detach())}
        n = len(masks)
        total, count = total + loss * n, count + n
        ious.append(top1_iou(output, targets))

    for task in ("referring", "reasoning"):
        items = [item for item in batch.images if item.task == task and item.texts]
        if items:
            encoded = predictor.encode([item.image for item in items])
            prefill = predictor.prefill(encoded, [item.texts for item in items], task)
            masks = [m for item in items for m in item.masks]
            add(encoded, prefill, masks, [i.objects for i in items], [n for i in items for n in i.named])
    if batch.clips:
        state = None
        for t in range(len(batch.clips[0].frames)):  # the FVP state carried through the clip, with its gradients
            clips = batch.clips
            encoded = predictor.encode([clip.frames[t] for clip in clips])
            prefill = predictor.prefill(encoded, [clip.texts for clip in clips], "video", state)
            masks = [per_frame[t] for clip in clips for per_frame in clip.masks]
            add(encoded, prefill, masks, [c.objects[t] for c in clips], [n for c in clips for n in c.named])
            state = prefill.next_temporal
    return total / max(count, 1), terms, torch.cat(ious)


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, temporary)
    os.replace(temporary, path)


def save_state(folder: Path, predictor, optimizer, progress: Progress, config: TrainConfig) -> None:
    """Model, optimizer and progress under ``folder/state``; each file replaced whole, progress last."""
    state = folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    _save_atomic(predictor.model.state_dict(), state / "model.safetensors")
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    _save_atomic(tensors, state / "optimizer.safetensors")
    record = {
        "config": config.to_json(),
        "progress": dataclasses.asdict(progress),
        "param_groups": opt["param_groups"],
    }
    temporary = state / f".progress.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(record))
    os.replace(temporary, state / "progress.json")


def load_state(folder: Path, predictor, optimizer, config: TrainConfig) -> Progress:
    """Resume from ``folder/state`` if a run of the same configuration saved one there, else start at step 0."""
    state = folder / "state"
    if not (state / "progress.json").is_file():
        return Progress()
    record = json.loads((state / "progress.json").read_text())
    if TrainConfig.from_json(record["config"]) != config:  # fields added since the run started take defaults
        raise ValueError(f"{folder} holds a run of another configuration; use another folder or --overwrite")
    predictor.model.load_state_dict(load_file(state / "model.safetensors"))
    tensors = load_file(state / "optimizer.safetensors")
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": record["param_groups"]})
    return Progress(**record["progress"])


def source_commit() -> str:
    """The checkout's git commit, with ``-dirty`` if tracked files differ from it (``unknown`` outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def heldout_eval(predictor: HyperSegPredictor, samples) -> dict:
    predictor.model.eval()
    try:
        scores = evaluate_images(predictor, samples)
    finally:
        predictor.model.train()
    return {"giou": scores.giou, "ciou": scores.ciou, "pairs": len(scores.ious)}


def train(config: TrainConfig, folder: str | Path, *, progress_bar: bool = True) -> Progress:
    """Train (or resume) to ``config.steps``; writes the state, the checkpoint and the curve into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    predictor = build(config, folder)
    predictor.image_states = config.ground_weight > 0
    model = predictor.model.train()
    optimizer = optimizer_for(model, config)
    progress = load_state(folder, predictor, optimizer, config)
    progress.sessions.append({"step": progress.step, "commit": source_commit(), "started": time.time()})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config), last_epoch=progress.step - 1)
    heldout = heldout_images(config.eval_images) if config.eval_images else []
    loader = DataLoader(
        Batches(progress.step, config.steps, config.data), batch_size=None, num_workers=1, prefetch_factor=4
    )
    bar = tqdm(total=config.steps, initial=progress.step, disable=not progress_bar, desc="train", unit="step")
    running_iou = None
    started = time.perf_counter()
    for batch in loader:
        loss, terms, ious = batch_loss(
            predictor, batch, config.instance_weight, config.choice_weight, config.ground_weight
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        optimizer.step()
        scheduler.step()
        progress.step = batch.step + 1
        iou, best = (float(v) for v in ious.mean(0))
        running_iou = iou if running_iou is None else 0.98 * running_iou + 0.02 * iou
        lr = scheduler.get_last_lr()[0]
        value = float(loss.detach())
        progress.history.append({"step": batch.step, "loss": value, **terms, "iou": iou, "best_iou": best, "lr": lr})
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", iou=f"{running_iou:.3f}", lr=f"{lr:.1e}")
        last = progress.step == config.steps
        if heldout and (progress.step % config.eval_every == 0 or last):
            progress.evals.append({"step": progress.step, **heldout_eval(predictor, heldout)})
            bar.write(f"step {progress.step}: held-out gIoU {progress.evals[-1]['giou']:.3f}")
        if progress.step % config.save_every == 0 or last:
            progress.seconds += time.perf_counter() - started
            started = time.perf_counter()
            save_state(folder, predictor, optimizer, progress, config)
    bar.close()
    progress.seconds += time.perf_counter() - started
    finish(folder, predictor, progress)
    return progress


def finish(folder: Path, predictor: HyperSegPredictor, progress: Progress) -> None:
    """The released-layout checkpoint and the curve of a finished run."""
    from ..model.save import save_pretrained
    from .curve import plot_curve

    predictor.model.eval()
    save_pretrained(predictor.model, predictor.tokenizer, folder / "checkpoint")
    plot_curve(progress, folder / "curve.png")
