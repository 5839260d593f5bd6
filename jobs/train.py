"""Train the miniature HyperSeg on the synthetic world; resumable, with a progress bar, a curve and a card.

    python jobs/train.py --out runs/train-synth                 # the shipped model's recipe (about 2 h, 2 cores)
    python jobs/train.py --out runs/quick --steps 200            # a short run
    nohup python jobs/train.py --out runs/train-synth > train.log 2>&1 &   # in the background; rerun to resume

The run folder holds the resumable state, ``checkpoint/`` (released layout: safetensors, config.json,
mask_config.json, siglip_preprocessor_config.json, tokenizer) with its ``README.md`` card, and ``curve.png``.
Running the same command again resumes from the last saved step; another configuration in the folder is refused
unless ``--overwrite`` is given. ``--copy-to DIR`` also writes the finished checkpoint (and card) to ``DIR``.
"""

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def parse(argv: list[str] | None) -> argparse.Namespace:
    from pipeline.train.data import DataSettings
    from pipeline.train.loop import TrainConfig

    d, t = DataSettings(), TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/train-synth", help="run folder (state, checkpoint, curve)")
    parser.add_argument("--preset", default=t.preset, help="model sizes (pipeline.model.config presets)")
    parser.add_argument("--steps", type=int, default=t.steps)
    parser.add_argument("--lr", type=float, default=t.lr, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=t.warmup, help="linear warm-up steps, then cosine")
    parser.add_argument("--seed", type=int, default=t.seed, help="model initialisation seed")
    parser.add_argument(
        "--instance-weight", type=float, default=t.instance_weight, help="weight of the loss's instance term"
    )
    parser.add_argument(
        "--choice-weight", type=float, default=t.choice_weight, help="weight of the loss's choice term"
    )
    parser.add_argument(
        "--ground-weight", type=float, default=t.ground_weight, help="weight of the loss's grounding term"
    )
    parser.add_argument("--images-per-step", type=int, default=d.images_per_step)
    parser.add_argument("--max-expressions", type=int, default=d.max_expressions, help="per image or clip")
    parser.add_argument("--clips-per-step", type=int, default=d.clips_per_step)
    parser.add_argument("--video-every", type=int, default=d.video_every, help="every n-th step is a clip step")
    parser.add_argument("--clip-frames", type=int, default=d.clip_frames)
    parser.add_argument("--eval-every", type=int, default=t.eval_every)
    parser.add_argument("--eval-images", type=int, default=t.eval_images, help="held-out images of the curve")
    parser.add_argument("--card-images", type=int, default=200, help="held-out images of the card's accuracy")
    parser.add_argument("--card-videos", type=int, default=40, help="held-out videos of the card's accuracy")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    parser.add_argument("--copy-to", help="also copy the finished checkpoint here (e.g. checkpoints/synth-hyperseg)")
    parser.add_argument("--overwrite", action="store_true", help="discard another configuration's run in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("steps", "images_per_step", "max_expressions", "clips_per_step", "clip_frames", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if (
        args.lr <= 0
        or args.warmup < 0
        or args.video_every < 0
        or min(args.instance_weight, args.choice_weight, args.ground_weight) < 0
    ):
        parser.error("--lr must be positive and --warmup, --video-every and the loss weights non-negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from pipeline.model.config import PRESETS
    from pipeline.train.data import DataSettings
    from pipeline.train.loop import TrainConfig, train

    if args.preset not in PRESETS:
        print(f"error: unknown --preset {args.preset!r}; expected one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    config = TrainConfig(
        preset=args.preset,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        instance_weight=args.instance_weight,
        choice_weight=args.choice_weight,
        ground_weight=args.ground_weight,
        eval_every=args.eval_every,
        eval_images=args.eval_images,
        data=DataSettings(
            images_per_step=args.images_per_step,
            clips_per_step=args.clips_per_step,
            video_every=args.video_every,
            clip_frames=args.clip_frames,
            max_expressions=args.max_expressions,
        ),
    )
    out = Path(args.out)
    if args.overwrite and out.exists():
        shutil.rmtree(out)
    try:
        progress = train(config, out, progress_bar=not args.no_progress)
    except ValueError as error:  # another configuration in the folder: a usage error, not a crash
        print(f"error: {error}", file=sys.stderr)
        return 2
    from pipeline.train.card import write_card

    card = write_card(
        out,
        config,
        progress,
        ["python", "jobs/train.py", *(argv or sys.argv[1:])],
        images=args.card_images,
        videos=args.card_videos,
    )
    print(card.read_text())
    if args.copy_to:
        shutil.copytree(out / "checkpoint", args.copy_to, dirs_exist_ok=True)
        shutil.copy(out / "curve.png", Path(args.copy_to) / "curve.png")
        print(f"copied the checkpoint to {args.copy_to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
