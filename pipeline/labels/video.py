"""Video exports: SA-V's masklet JSON (one file per video) and DAVIS's palette PNGs with one object id per prompt.

In both, a prompt is one object of its video. A frame whose mask the filters reject holds an empty mask there.
"""

import io
import json
import posixpath

import numpy as np
from PIL import Image

from ..data import rle
from .files import JsonArray, copy_frames, image_file, json_number, open_output, write_document
from .ontology import Ontology
from .source import LabelledSample, decode

# SA-V's size buckets on the mean visible area in pixels (facebookresearch/sam2 sav_dataset/README.md).
SMALL, MEDIUM = 32**2, 96**2


def _bucket(area: float) -> str:
    return "small" if area < SMALL else "medium" if area < MEDIUM else "large"


def _objects(item: LabelledSample) -> list[str]:
    """The sample's prompts (expression ids) in order: object ``i`` of the video."""
    return [label.expression_id for label in item.frames[0].labels]


def _visible(item: LabelledSample, expression_id: str) -> list:
    """Per frame, the object's label if accepted (and not empty), else None."""
    out = []
    for frame in item.frames:
        label = next(lab for lab in frame.labels if lab.expression_id == expression_id)
        out.append(label if label.accepted and label.area > 0 else None)
    return out


class SavWriter:
    """``<out>/<video key>_auto.json`` per video, SA-V train's fields plus the prompt, category, scores and the
    track summaries (``masklet_present_fraction``, ``masklet_temporal_iou``: of the unfiltered masks)."""

    def __init__(self, out: str, ontology: Ontology, info: dict, *, copy_images: bool = False) -> None:
        self.out, self.info, self.copy_images = out.rstrip("/"), info, copy_images
        self.skipped_images = 0

    def add(self, item: LabelledSample, image_ids: list[int]) -> None:
        if not item.is_video:
            self.skipped_images += 1
            return
        first = item.frames[0]
        height, width = first.height, first.width
        empty = rle.encode(np.zeros((height, width), dtype=bool))
        objects = [e for e in _objects(item) if any(_visible(item, e))]  # a masklet appears at least once
        per_object = {e: _visible(item, e) for e in objects}
        tracks = list(per_object.values())
        masklet = [  # frames x objects, SA-V's order
            [{"size": [height, width], "counts": v[t].rle["counts"] if v[t] else empty["counts"]} for v in tracks]
            for t in range(len(item.frames))
        ]
        stats = {key: [] for key in ("size_abs", "size_rel", "changes", "first", "score", "stability")}
        for visible in per_object.values():
            areas = [lab.area for lab in visible if lab]
            seen = [lab is not None for lab in visible]
            first_seen = seen.index(True)
            stats["size_abs"].append(float(np.mean(areas)))
            stats["size_rel"].append(float(np.mean(areas)) / (height * width))
            after = seen[first_seen:]
            stats["changes"].append(sum(a != b for a, b in zip(after, after[1:], strict=False)))
            stats["first"].append(first_seen)
            stats["score"].append(float(np.mean([lab.score for lab in visible if lab])))
            stats["stability"].append([json_number(lab.stability) if lab else None for lab in visible])
        labels = [next(lab for lab in first.labels if lab.expression_id == e) for e in objects]
        fps = item.fps
        document = {
            "video_id": item.key,
            "video_original_id": item.original_id,
            "video_duration": len(item.frames) / fps if fps else None,
            "video_frame_count": float(len(item.frames)),
            "video_height": float(height),
            "video_width": float(width),
            "video_resolution": float(height * width),
            "video_environment": None,
            "video_split": item.sample.meta["source"]["split"],
            "video_frame_names": [f.name for f in item.frames],
            "masklet": masklet,
            "masklet_id": list(range(len(objects))),
            "masklet_size_rel": stats["size_rel"],
            "masklet_size_abs": stats["size_abs"],
            "masklet_size_bucket": [_bucket(a) for a in stats["size_abs"]],
            "masklet_visibility_changes": stats["changes"],
            "masklet_first_appeared_frame": stats["first"],
            "masklet_frame_count": [len(item.frames)] * len(objects),
            "masklet_edited_frame_count": [0] * len(objects),
            "masklet_type": ["auto"] * len(objects),
            "masklet_stability_score": stats["stability"],
            "masklet_num": len(objects),
            "masklet_prompt": [lab.prompt for lab in labels],
            "masklet_expression_id": objects,
            "masklet_category_id": [lab.category.id for lab in labels],
            "masklet_category": [lab.category.name for lab in labels],
            "masklet_score": stats["score"],
            "masklet_present_fraction": [item.tracks.get(e, {}).get("present_fraction") for e in objects],
            "masklet_temporal_iou": [json_number(item.tracks.get(e, {}).get("temporal_iou")) for e in objects],
            "model_version": self.info["model_version"],
        }
        with open_output(f"{self.out}/{item.key}_auto.json") as f:
            json.dump(document, f, separators=(",", ":"))
        if self.copy_images:
            copy_frames(item, f"{self.out}/JPEGImages", [(f, image_file(item, f)) for f in item.frames])

    def close(self) -> None:
        pass


def palette() -> list[int]:
    """The PASCAL VOC / DAVIS colour map, flattened RGB for 256 ids: id ``i``'s bits are spread over the three
    channels from the high bit down (the VOC devkit's ``labelcolormap``)."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


class DavisWriter:
    """``Annotations/<video key>/<frame name>.png`` palette PNGs (0 background, object ``i`` = the video's
    ``i``-th prompt, 1-based) and ``meta.json`` mapping each video's ids to prompts and categories. DAVIS holds one
    id per pixel: where accepted masks overlap, the higher-scored one's id is written."""

    PALETTE = palette()

    def __init__(self, out: str, ontology: Ontology, info: dict, *, copy_images: bool = False) -> None:
        self.out, self.info, self.copy_images = out.rstrip("/"), info, copy_images
        self.videos = JsonArray()
        self.skipped_images = 0

    def add(self, item: LabelledSample, image_ids: list[int]) -> None:
        if not item.is_video:
            self.skipped_images += 1
            return
        ids = {e: i + 1 for i, e in enumerate(_objects(item))}
        for frame in item.frames:
            canvas = np.zeros((frame.height, frame.width), dtype=np.uint8)
            for label in sorted((lab for lab in frame.labels if lab.accepted), key=lambda lab: lab.score):
                canvas[decode(label)] = ids[label.expression_id]
            image = Image.fromarray(canvas, mode="P")
            image.putpalette(self.PALETTE)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            with open_output(f"{self.out}/Annotations/{item.key}/{frame.name}.png", "wb") as f:
                f.write(buffer.getvalue())
        labels = item.frames[0].labels
        objects = {
            str(ids[lab.expression_id]): {
                "prompt": lab.prompt,
                "expression_id": lab.expression_id,
                "category_id": lab.category.id,
                "category": lab.category.name,
            }
            for lab in labels
        }
        frames = [f.name for f in item.frames]
        self.videos.append({"video": item.key, "original_id": item.original_id, "frames": frames, "objects": objects})
        if self.copy_images:  # DAVIS's JPEGImages/<video>/<frame>, named as the annotations
            names = [(f, f"{item.key}/{f.name}{posixpath.splitext(image_file(item, f))[1]}") for f in item.frames]
            copy_frames(item, f"{self.out}/JPEGImages", names)

    def close(self) -> None:
        write_document(f"{self.out}/meta.json", [("info", self.info), ("videos", self.videos)])
