"""Video evaluation: ReVOS, MeViS, Ref-DAVIS17-style sets; J, F, J&F (and A, R for ReVOS) per split.

    python jobs/eval_revos.py                                   # held-out synthetic ReVOS videos, shipped model
    python jobs/eval_revos.py --shards s3://bucket/revos-valid/manifest.json --checkpoint /models/HyperSeg-3B \
        --method evtp --keep 0.2 --actors 8 --output s3://bucket/runs/revos-evtp-0.2
    ray job submit --working-dir . -- python jobs/eval_revos.py --shards ... --output ...

Sets without public ground truth (Ref-YouTube-VOS valid, MeViS valid) are exported with ``--export-png DIR`` in
the official submission layout ``DIR/Annotations/<video>/<exp_id>/<frame>.png`` (0/255, mode L).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import fsspec  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.data import Sample, read_samples  # noqa: E402
from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.cli import evaluation_job, fixture_shards, job_parser  # noqa: E402
from pipeline.engine.report import VIDEO_COLUMNS, video_summary  # noqa: E402
from pipeline.results import decode_mask, load  # noqa: E402
from pipeline.synth.write import write_revos  # noqa: E402


def fixture(folder: Path) -> str:
    """Held-out videos of the synthetic world in the ReVOS layout (with its motion-only expressions)."""
    write_revos(folder / "revos", split="valid", count=4, frames=6)
    return fixture_shards(folder, list(FORMATS["revos"](folder / "revos", split="valid")))


def export_png(shards: str, predictions, directory: str) -> int:
    """Write every predicted mask as ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255, mode L)."""
    original = {s.key: s.meta["source"]["original_id"] for s in read_samples(shards) if isinstance(s, Sample)}
    fs, root = fsspec.core.url_to_fs(directory)
    for row in predictions.to_dict("records"):
        folder = f"{root}/Annotations/{original[row['sample_key']]}/{row['expression_id']}"
        fs.makedirs(folder, exist_ok=True)
        with fs.open(f"{folder}/{row['frame_name']}.png", "wb") as f:
            Image.fromarray(decode_mask(row).astype("uint8") * 255, mode="L").save(f, format="PNG")
    return len(predictions)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, default_output="runs/eval-revos")
    parser.add_argument("--export-png", help="also write the masks in the official PNG layout under this folder")
    args = parser.parse_args(argv)

    def exported(config) -> str:
        if not args.export_png:
            return ""
        written = export_png(config.data.shards, load(config.output.uri, "predictions"), args.export_png)
        return f"\nexported {written} masks to {args.export_png}/Annotations"

    return evaluation_job(
        args,
        fixture,
        name="eval_revos",
        summarize=video_summary,
        columns=VIDEO_COLUMNS,
        counts=lambda s: (
            f"{s.samples} videos, {s.frames} frames, {s.errors} errors, {s.shards_done} shards done, "
            f"{s.shards_skipped} skipped"
        ),
        extra=exported,
    )


if __name__ == "__main__":
    sys.exit(main())
