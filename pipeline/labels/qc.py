"""The QC sheet: for each category, random accepted and random rejected masks over their frames, sorted by score,
with the reasons each was rejected, and score and stability histograms.

Writes ``<folder>/index.html``, ``<folder>/img/*.png`` and ``<folder>/hist/*.png``. The masks shown are a uniform
sample of each (category, verdict) drawn while the export streams (reservoir sampling, seeded), so the sheet costs
a bounded amount of memory whatever the size of the run.
"""

import html
import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..viz import mask_overlay
from .files import open_output, write_text
from .ontology import Ontology
from .source import Label, LabelledSample, decode

THUMBNAIL = 224  # longest side of a grid picture, pixels
BINS = np.linspace(0.0, 1.0, 21)
ACCEPTED_COLOUR, REJECTED_COLOUR = (0, 230, 255), (255, 60, 60)


@dataclass
class Pick:
    label: Label
    caption: str
    picture: Image.Image


class QcSheet:
    def __init__(self, folder: str, ontology: Ontology, *, per_grid: int = 12, seed: int = 0) -> None:
        self.folder = folder.rstrip("/")
        self.names = [c.name for c in ontology.category_list()]
        self.per_grid, self.rng = per_grid, random.Random(seed)
        self.seen = {(n, v): 0 for n in self.names for v in (True, False)}
        self.picks: dict[tuple[str, bool], list[Pick]] = {key: [] for key in self.seen}
        keys = [(n, s, v) for n in self.names for s in ("score", "stability") for v in (True, False)]
        self.histograms = {key: np.zeros(len(BINS) - 1, int) for key in keys}

    def add(self, item: LabelledSample) -> None:
        pixels = None  # decoded on the first pick from this sample
        for frame in item.frames:
            for label in frame.labels:
                name, verdict = label.category.name, label.accepted
                for signal in ("score", "stability"):
                    value = getattr(label, signal)
                    if value == value:  # not NaN
                        index = min(int(np.searchsorted(BINS, value, side="right")) - 1, len(BINS) - 2)
                        self.histograms[(name, signal, verdict)][max(index, 0)] += 1
                key = (name, verdict)
                self.seen[key] += 1
                pool = self.picks[key]
                slot = len(pool) if len(pool) < self.per_grid else self.rng.randrange(self.seen[key])
                if slot >= self.per_grid:
                    continue
                if pixels is None:
                    pixels = item.sample.frames()
                pick = self._pick(item, frame, label, pixels[frame.index])
                if slot == len(pool):
                    pool.append(pick)
                else:
                    pool[slot] = pick

    def _pick(self, item: LabelledSample, frame, label: Label, pixels: np.ndarray) -> Pick:
        colour = ACCEPTED_COLOUR if label.accepted else REJECTED_COLOUR
        picture = mask_overlay(Image.fromarray(pixels), decode(label), colour)
        picture.thumbnail((THUMBNAIL, THUMBNAIL))
        where = item.key + (f" frame {frame.name}" if item.is_video else "")
        caption = f"{label.prompt} | score {label.score:.2f}, stability {label.stability:.2f} | {where}"
        if label.reasons:
            caption += " | rejected: " + "; ".join(label.reasons)
        return Pick(label, caption, picture)

    def _histogram(self, name: str, index: int) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 2, figsize=(8, 2.6), constrained_layout=True)
        for axis, signal in zip(axes, ("score", "stability"), strict=True):
            for verdict, colour, text in ((True, "tab:cyan", "accepted"), (False, "tab:red", "rejected")):
                counts = self.histograms[(name, signal, verdict)]
                axis.stairs(counts, BINS, color=colour, label=f"{text} ({counts.sum()})", fill=False, linewidth=1.5)
            axis.set_xlabel(signal)
            axis.set_ylabel("masks")
            axis.set_xlim(0, 1)
            axis.legend(fontsize=8)
        figure.suptitle(name, fontsize=10)
        relative = f"hist/{index:03d}.png"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        with open_output(f"{self.folder}/{relative}", "wb") as f:
            f.write(buffer.getvalue())
        return relative

    def close(self, summary) -> None:
        stats = {row["category"]: row for row in summary.rows()}
        sections = []
        for index, name in enumerate(self.names):
            row = stats[name]
            grids = []
            for verdict, title in ((True, "accepted"), (False, "rejected")):
                picks = sorted(self.picks[(name, verdict)], key=lambda p: -p.label.score)
                cells = []
                for n, pick in enumerate(picks):
                    relative = f"img/{index:03d}-{title}-{n:02d}.png"
                    buffer = io.BytesIO()
                    pick.picture.save(buffer, format="PNG")
                    with open_output(f"{self.folder}/{relative}", "wb") as f:
                        f.write(buffer.getvalue())
                    cells.append(
                        f'<figure><img src="{relative}" alt="{html.escape(pick.label.prompt)}">'
                        f"<figcaption>{html.escape(pick.caption)}</figcaption></figure>"
                    )
                shown = f"{len(picks)} of {self.seen[(name, verdict)]}"
                body = "".join(cells) or "<p>none</p>"
                grids.append(f'<h3>{title} ({shown}, by score)</h3><div class="grid {title}">{body}</div>')
            histogram = self._histogram(name, index)
            sections.append(
                f'<section class="category"><h2>{html.escape(name)}</h2>'
                f"<p>{row['masks']} masks, {row['accepted']} accepted; mean score {row['mean_score']:.3f}, "
                f"mean stability {row['mean_stability']:.3f}</p>"
                f'<img class="hist" src="{histogram}" alt="score and stability histograms of {html.escape(name)}">'
                + "".join(grids)
                + "</section>"
            )
        page = PAGE.format(
            title=html.escape(f"QC: {summary.out}"),
            summary=html.escape(f"{summary.samples} samples, {summary.frames} frames, format {summary.format}"),
            sections="\n".join(sections),
        )
        write_text(f"{self.folder}/index.html", page)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 11px; }}
.rejected figcaption {{ color: #a00; }}
</style></head>
<body><h1>{title}</h1><p>{summary}</p>
{sections}
</body></html>
"""
