"""The model card of a trained checkpoint: how it was made and what it scores on held-out data at keep 1.0.

The card also asks whether the model reads its image through the LLM at all, which the pruning study presumes: a
HyperSeg can find "the red circle" from the words alone, with the decoder matching them against Swin features, and
then pruning the LLM's visual tokens changes nothing. So it gives the same expressions' gIoU with one visual token
kept, the paired difference, and what answering with a random object of the scene would score.

Written into the checkpoint folder as ``README.md`` (for people) and ``card.json`` (for the tests, which check that
the shipped checkpoint still scores its card's ``test_set`` numbers). Held-out data is the ``val`` split of the
synthetic world, whose seeds no training sample uses (``pipeline.synth.samples``).
"""

import json
import platform
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..config import PruningConfig
from ..metrics.bootstrap import interval, paired
from ..metrics.refer import score_pair
from ..model import load
from ..model.hyperseg.predictor import HyperSegPredictor
from ..synth.samples import ImageSample, generator, reasonseg_image
from .evaluate import evaluate_images, evaluate_video, heldout_images, heldout_videos, image_target

# The small fixed held-out set the accuracy tests run (tests/train/test_accuracy.py), and its size.
TEST_IMAGES = 16
TEST_VIDEOS = 8


def image_rows(predictor: HyperSegPredictor, samples: list[ImageSample]) -> list[dict]:
    """Per expression: image, family, IoU, intersection and union (in ``evaluate_images``' order)."""
    scores = evaluate_images(predictor, samples)
    rows, k = [], 0
    for index, sample in enumerate(samples):
        for kind in ("referring", "reasoning"):
            for expression in (e for e in sample.expressions if e.kind == kind):
                truth = image_target(sample, expression.targets)
                rows.append({"image": index, "family": expression.family, "iou": scores.ious[k], "area": truth.mean()})
                k += 1
    return rows


def chance_iou(sample: ImageSample, targets) -> float:
    """The expected IoU of answering with one of the scene's objects, each as likely."""
    truth = image_target(sample, targets)
    return float(np.mean([score_pair(o.visible, truth).iou for o in sample.scene.objects]))


def reliance_summary(predictor: HyperSegPredictor, samples: list[ImageSample], rows: list[dict]) -> dict:
    """``rows`` (``image_rows`` at keep 1.0) against the same expressions with one visual token kept by EVTP.

    A difference whose interval excludes 0 means the LLM's visual tokens carry information the masks use.
    """
    pruning = predictor.pruning
    predictor.pruning = PruningConfig("evtp", 1)
    try:
        one = image_rows(predictor, samples)
    finally:
        predictor.pruning = pruning
    groups = [r["image"] for r in rows]
    full, single = [r["iou"] for r in rows], [r["iou"] for r in one]
    drop = paired(full, single, groups=groups)
    chance = [
        chance_iou(sample, e.targets)
        for sample in samples
        for kind in ("referring", "reasoning")
        for e in sample.expressions
        if e.kind == kind
    ]
    return {
        "giou_keep_1.0": float(np.mean(full)),
        "giou_one_token": float(np.mean(single)),
        "drop": drop.difference.value,
        "drop_ci": [drop.difference.low, drop.difference.high],
        "drop_p": drop.p_value,
        "chance_giou": float(np.mean(chance)),
    }


def image_summary(rows: list[dict]) -> dict:
    ious = np.array([r["iou"] for r in rows])
    groups = [r["image"] for r in rows]
    giou = interval(ious, groups=groups)
    families = defaultdict(list)
    for r in rows:
        families[r["family"]].append(r["iou"])
    return {
        "expressions": len(rows),
        "images": len(set(groups)),
        "giou": giou.value,
        "giou_ci": [giou.low, giou.high],
        "families": {f: {"n": len(v), "giou": float(np.mean(v))} for f, v in sorted(families.items())},
    }


def video_summary(predictor: HyperSegPredictor, count: int) -> dict:
    """Mean J per expression with the FVP state carried, and without it, overall and on motion expressions."""
    from ..synth.video import MOTION_FAMILIES

    rows = []
    for index, sample in enumerate(heldout_videos(count)):
        carried = evaluate_video(predictor, sample, carry=True)
        alone = evaluate_video(predictor, sample, carry=False)
        for e, expression in enumerate(sample.expressions):
            motion = expression.family in MOTION_FAMILIES
            rows.append(
                {"video": index, "family": expression.family, "motion": motion, "j": carried[e], "j_alone": alone[e]}
            )
    out = {"videos": count, "expressions": len(rows)}
    for name, keep in (("all", lambda r: True), ("motion", lambda r: r["motion"])):
        chosen = [r for r in rows if keep(r)]
        if not chosen:
            continue
        groups = [r["video"] for r in chosen]
        j = interval([r["j"] for r in chosen], groups=groups)
        alone = interval([r["j_alone"] for r in chosen], groups=groups)
        out[name] = {
            "n": len(chosen),
            "j": j.value,
            "j_ci": [j.low, j.high],
            "j_alone": alone.value,
            "j_alone_ci": [alone.low, alone.high],
        }
    return out


def evaluate_card(predictor: HyperSegPredictor, images: int, videos: int, reasoning: int) -> dict:
    """Every number of the card."""
    samples = heldout_images(images)
    refcoco = image_rows(predictor, samples)
    reason = image_rows(predictor, [reasonseg_image(generator("val", "reasonseg", i)) for i in range(reasoning)])
    test_images = evaluate_images(predictor, heldout_images(TEST_IMAGES))
    test_videos = [j for s in heldout_videos(TEST_VIDEOS) for j in evaluate_video(predictor, s)]
    return {
        "refcoco": image_summary(refcoco),
        "reliance": reliance_summary(predictor, samples, refcoco),
        "reasonseg": image_summary(reason),
        "video": video_summary(predictor, videos),
        "test_set": {
            "images": TEST_IMAGES,
            "videos": TEST_VIDEOS,
            "giou": test_images.giou,
            "ciou": test_images.ciou,
            "video_j": float(np.mean(test_videos)),
        },
    }


def write_card(
    folder: Path, config, progress, command: list[str], *, images: int = 200, videos: int = 40, reasoning: int = 60
) -> Path:
    """Evaluate ``folder/checkpoint`` at keep 1.0 and write its ``README.md`` and ``card.json``."""
    checkpoint = Path(folder) / "checkpoint"
    predictor = load.from_pretrained(checkpoint)
    numbers = evaluate_card(predictor, images, videos, reasoning)
    parameters = sum(p.numel() for p in predictor.model.parameters())
    card = {
        "name": "synth-hyperseg",
        "architecture": "HyperSeg",
        "preset": config.preset,
        "parameters": parameters,
        "command": " ".join(command),
        "seed": config.seed,
        "commits": sorted({s["commit"] for s in progress.sessions}),
        "steps": progress.step,
        "training_seconds": progress.seconds,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "config": config.to_json(),
        "heldout": numbers,
    }
    (checkpoint / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    (checkpoint / "README.md").write_text(render(card))
    return checkpoint / "README.md"


def _row(name: str, s: dict) -> str:
    low, high = s["giou_ci"]
    return f"| {name} | {s['images']} | {s['expressions']} | {s['giou']:.3f} [{low:.3f}, {high:.3f}] |"


def render(card: dict) -> str:
    h = card["heldout"]
    minutes = card["training_seconds"] / 60
    lines = [
        "# synth-hyperseg: a HyperSeg miniature trained on the synthetic referring world",
        "",
        f"HyperSeg's architecture and classes (`pipeline.model.HyperSeg`, preset `{card['preset']}`, "
        f"{card['parameters'] / 1e6:.2f} M parameters) in the released checkpoint layout; "
        "`pipeline.model.load.from_pretrained` loads it like any HyperSeg checkpoint. Trained from scratch on a CPU "
        "on the synthetic world of `pipeline/synth/` (coloured shapes; referring, relation, reasoning and motion "
        "expressions). It knows nothing else: it is a test instrument for the pipeline and the pruning study, "
        "not a general segmenter.",
        "",
        "## How it was made",
        "",
        f"- Command: `{card['command']}`",
        f"- Seed: {card['seed']} (model initialisation); training data from the `train` split's seeds",
        f"- Commit: {', '.join(card['commits'])}",
        f"- Training: {card['steps']} steps in {minutes:.0f} min ({card['machine']})",
        "",
        "## Held-out accuracy at keep 1.0 (split `val`, seeds disjoint from training)",
        "",
        "95% intervals: percentile bootstrap over images or videos (2,000 resamples).",
        "",
        "| set | images | expressions | gIoU |",
        "|---|---|---|---|",
        _row("RefCOCO-style referring", h["refcoco"]),
        _row("ReasonSeg-style reasoning", h["reasonseg"]),
        "",
    ]
    video = h["video"]
    lines += [
        "| video set (ReVOS-style) | videos | expressions | J, state carried | J, frame by frame |",
        "|---|---|---|---|---|",
    ]
    for name in ("all", "motion"):
        if name in video:
            v = video[name]
            lines.append(
                f"| {name} expressions | {video['videos']} | {v['n']} | {v['j']:.3f} [{v['j_ci'][0]:.3f}, "
                f"{v['j_ci'][1]:.3f}] | {v['j_alone']:.3f} [{v['j_alone_ci'][0]:.3f}, {v['j_alone_ci'][1]:.3f}] |"
            )
    if "reliance" in h:  # cards written before the reliance check have none
        r = h["reliance"]
        lines += [
            "",
            "Does the LLM read the image? The RefCOCO-style expressions again, with one visual token kept (EVTP); "
            "the drop's interval is a paired bootstrap over images. A random object of each scene scores the "
            "chance gIoU.",
            "",
            "| gIoU, keep 1.0 | gIoU, one visual token | drop | chance |",
            "|---|---|---|---|",
            f"| {r['giou_keep_1.0']:.3f} | {r['giou_one_token']:.3f} | {r['drop']:+.3f} [{r['drop_ci'][0]:+.3f}, "
            f"{r['drop_ci'][1]:+.3f}] (p {r['drop_p']:.3f}) | {r['chance_giou']:.3f} |",
        ]
    lines += [
        "",
        "Per family (RefCOCO-style and ReasonSeg-style images):",
        "",
        "| family | expressions | gIoU |",
        "|---|---|---|",
    ]
    for s in (h["refcoco"], h["reasonseg"]):
        for family, f in s["families"].items():
            lines.append(f"| {family} | {f['n']} | {f['giou']:.3f} |")
    t = h["test_set"]
    lines += [
        "",
        f"Test set (`tests/train/test_accuracy.py`: the first {t['images']} held-out images and {t['videos']} "
        f"videos): gIoU {t['giou']:.4f}, cIoU {t['ciou']:.4f}, video J {t['video_j']:.4f}.",
        "",
    ]
    return "\n".join(lines)
