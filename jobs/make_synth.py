"""Write the synthetic world (pipeline.synth) in an official dataset layout, ready for jobs/make_shards.py.

    python jobs/make_synth.py --format refcoco --split val --count 500 --out /data/synth/refer_seg
    python jobs/make_synth.py --format reasonseg --split val --count 200 --out /data/synth/ReasonSeg
    python jobs/make_synth.py --format revos --split valid --count 100 --frames 8 --out /data/synth/ReVOS

Splits share a root (their files are merged); ``synth_index.json`` beside the layout lists every expression with
its family, kind, target count and target area. The same command writes byte-identical files.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.synth.write import REASONSEG_SPLITS, REFCOCO_SPLITS, REVOS_SPLITS, WRITERS  # noqa: E402

SPLITS = {"refcoco": list(REFCOCO_SPLITS), "reasonseg": list(REASONSEG_SPLITS), "revos": list(REVOS_SPLITS)}
PROG = Path(__file__).name
DEFAULT_SPLIT = {"refcoco": "val", "reasonseg": "val", "revos": "valid"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(WRITERS))
    parser.add_argument(
        "--split", help="refcoco: train, val, test, testA-C; reasonseg: train, val, test; revos: train, valid, test"
    )
    parser.add_argument("--count", required=True, type=int, help="images (refcoco, reasonseg) or videos (revos)")
    parser.add_argument("--out", required=True, help="the dataset root to write (created if missing)")
    parser.add_argument("--frames", type=int, help="revos: frames per video (default 8)")
    parser.add_argument(
        "--max-expressions", type=int, help="refcoco, revos: expressions per image or video (default 4)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.split = args.split or DEFAULT_SPLIT[args.format]
    if args.split not in SPLITS[args.format]:
        parser.error(f"--split {args.split} is not a {args.format} split: expected one of {SPLITS[args.format]}")
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.frames is not None and (args.format != "revos" or args.frames < 2):
        parser.error("--frames applies to --format revos only, and must be at least 2")
    if args.max_expressions is not None and (args.format == "reasonseg" or not 1 <= args.max_expressions <= 10):
        parser.error("--max-expressions applies to refcoco and revos only, and must be in 1..10")
    return args


class _Progress:
    """A tqdm bar on stderr, opened at the first finished sample (so a refused option prints only its error)."""

    def __init__(self, total: int):
        self.total, self.bar, self.done = total, None, 0

    def update(self) -> None:
        self.done += 1
        if self.bar is None:
            try:
                from tqdm import tqdm  # a transformers dependency; a plain count where it is missing
            except ImportError:
                if self.done % max(self.total // 10, 1) == 0 or self.done == self.total:
                    print(f"{self.done}/{self.total} samples", file=sys.stderr)
                return
            self.bar = tqdm(total=self.total, initial=self.done - 1, unit="sample", file=sys.stderr)
        self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {"split": args.split, "count": args.count}
    if args.frames is not None:
        options["frames"] = args.frames
    if args.max_expressions is not None:
        options["max_expressions"] = args.max_expressions
    bar = _Progress(args.count)
    progress = None if args.quiet or args.count < 20 else bar.update  # a bar only for counts worth watching
    try:
        written = WRITERS[args.format](args.out, progress=progress, **options)
    except ValueError as error:  # an option the writer refuses (e.g. a count past the split's id range)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(f"wrote {written.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
