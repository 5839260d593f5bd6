"""Convert a dataset in its official layout (or a folder of images and videos) into WebDataset shards.

    python jobs/make_shards.py --format revos --root /data/ReVOS --split valid --out s3://bucket/revos-valid
    python jobs/make_shards.py --format refcoco --root /data/refer_seg --dataset refcocog --split val --out shards/
    python jobs/make_shards.py --format folder --root /data/photos --prompts prompts.txt --out shards/photos

Writes ``{prefix}-{index:05d}.tar`` shards and ``manifest.json`` under ``--out`` (any fsspec URL).
Re-running the same command writes byte-identical shards.
"""

import argparse
import inspect
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data import write_shards  # noqa: E402
from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.preflight import check_output, fail  # noqa: E402

logger = logging.getLogger("make_shards")

# Flags a format may take, passed to its converter only when given (and only if it accepts them).
OPTIONS = {
    "dataset": "dataset name (refcoco: refcoco, refcoco+, refcocog; folder: the name recorded in the samples)",
    "split_by": "RefCOCO split file: unc, umd or google (default by dataset)",
    "image_root": "folder of the images when not at the layout's default place",
    "davis_root": "Ref-DAVIS17: the DAVIS 2017 folder",
    "text_root": "Ref-DAVIS17: the folder of the Davis17_annot*.txt files",
    "fps": "folder: frames per second sampled from videos",
    "prompts": "folder: a text file with one prompt per line, given to every sample",
    "frames_split": "refytvos: the split folder holding the frames (test videos live in valid/)",
    "polygon_overlap": "refcoco: 'union' (default) or 'lisa' (overlapping polygons count as background, as LISA)",
    "fill_rule": "reasonseg: the OpenCV polygon fill to reproduce, 'opencv-4.8' (default, LISA's) or 'opencv-4.12'",
}
# Boolean flags: the option they set and its value when given.
SWITCHES = {
    "keep_mp4": ("keep_mp4", True, "folder: store videos as mp4 members"),
    "skip_bad": ("skip_bad", True, "folder: log and skip files that do not decode"),
    "keep_test": ("drop_test", False, "refytvos valid: keep the test videos the valid file also lists"),
    "no_rle_check": ("check_rles", False, "revos/mevis: skip the check that every RLE covers its frame"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--root", required=True, help="the dataset folder (or an fsspec URL / glob for folder)")
    parser.add_argument("--out", required=True, help="output folder: a local path or any fsspec URL")
    parser.add_argument("--split", help="the split to convert (each format has its own names and default)")
    parser.add_argument("--prefix", help="shard name prefix (default: the format and split)")
    parser.add_argument("--max-samples", type=int, default=1000, help="samples per shard at most")
    parser.add_argument("--max-bytes", type=float, default=512e6, help="bytes per shard at most")
    for name, text in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=float if name == "fps" else str, help=text)
    for name, (_, _, text) in SWITCHES.items():
        parser.add_argument("--" + name.replace("_", "-"), action="store_true", help=text)
    return parser.parse_args(argv)


def converter_options(convert, args: argparse.Namespace) -> dict:
    """The flags given for this run, refused if the format's converter does not take them."""
    accepted = inspect.signature(convert).parameters
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    flags = {name: "--" + name.replace("_", "-") for name in given}
    for switch, (option, value, _) in SWITCHES.items():
        if getattr(args, switch):
            given[option], flags[option] = value, "--" + switch.replace("_", "-")
    if args.split is not None:
        given["split"], flags["split"] = args.split, "--split"
    unknown = sorted(flags[name] for name in set(given) - set(accepted))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} do(es) not apply to --format {args.format}")
    required = [
        "--" + name.replace("_", "-")
        for name, parameter in accepted.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty
        and name not in given
    ]  # fmt: skip
    if required:
        raise ValueError(f"--format {args.format} needs {', '.join(required)}")
    return given


def _as_text(options: dict) -> dict[str, str]:
    return {name: str(value) for name, value in options.items()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    convert = FORMATS[args.format]
    try:
        options = converter_options(convert, args)
        check_output(args.out)
    except ValueError as error:
        fail("make_shards.py", error)
    prefix = args.prefix or "-".join(filter(None, [args.format, options.get("split")])).replace(".", "_")
    logger.info("converting %s from %s with %s", args.format, args.root, options)
    try:
        shards = write_shards(
            convert(args.root, **options),
            args.out,
            prefix=prefix,
            max_samples=args.max_samples,
            max_bytes=int(args.max_bytes),
            extra={
                "converted_with": {
                    "format": args.format,
                    "root": str(args.root),
                    **{k: str(v) for k, v in options.items()},
                }
            },
        )
    except (ValueError, FileNotFoundError) as error:  # the layout is not what --format says (a missing file...)
        fail("make_shards.py", error)
    total = sum(s.samples for s in shards)
    print(f"{total} samples in {len(shards)} shards under {args.out} (manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
