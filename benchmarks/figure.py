"""The README's picture: the shipped checkpoint's masks and kept tokens on held-out synthetic scenes, EVTP against
random selection at the same budget (``pipeline.viz.compare_methods``, one row per scene).

    python benchmarks/figure.py                      # -> docs/images/evtp_vs_random.png
    python benchmarks/figure.py --out /tmp/f.png     # anywhere else
"""

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import load  # noqa: E402
from pipeline.synth.samples import generator, refcoco_image  # noqa: E402
from pipeline.viz import compare_methods  # noqa: E402

OUT = ROOT / "docs" / "images" / "evtp_vs_random.png"
CHECKPOINT = ROOT / "checkpoints" / "synth-hyperseg"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="3,11", help="held-out (val) refcoco-stream scene indices, one row each")
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    predictor = load.from_pretrained(CHECKPOINT)
    rows = []
    for index in (int(i) for i in args.scenes.split(",")):
        sample = refcoco_image(generator("val", "refcoco", index))
        expression = sample.expressions[0].text
        image = Image.fromarray(sample.scene.image)
        rows.append(compare_methods(predictor, image, expression, ["evtp", "random"], args.keep, panel_size=300))
    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
