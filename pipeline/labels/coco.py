"""COCO exports: a full instance-segmentation dataset, and the results list ``COCO.loadRes`` takes against it.

Image ids number every frame of the run in export order (accepted labels or not), so a dataset and a results
file exported from one run with any filters agree on them. Annotation ids number the accepted labels.
"""

from .files import JsonArray, copy_frames, frame_files, json_number, parent, write_array, write_document
from .ontology import Ontology
from .source import Label, LabelledSample


def _segmentation(label: Label) -> dict:
    return {"size": list(label.rle["size"]), "counts": label.rle["counts"]}


class CocoWriter:
    """``{"info", "images", "annotations", "categories"}``; annotations carry the quality signals and prompt beside
    COCO's fields. ``copy_images``: frames go to ``images/`` beside the JSON and ``file_name`` points there."""

    def __init__(self, out: str, ontology: Ontology, info: dict, *, copy_images: bool = False) -> None:
        self.out, self.ontology, self.info, self.copy_images = out, ontology, info, copy_images
        self.images, self.annotations = JsonArray(), JsonArray()

    def add(self, item: LabelledSample, image_ids: list[int]) -> None:
        names = frame_files(item, self.copy_images)
        for (frame, name), image_id in zip(names, image_ids, strict=True):
            image = {"id": image_id, "file_name": name, "width": frame.width, "height": frame.height}
            image |= {"sample_key": item.key, "frame_name": frame.name}  # the run's keys, to join back to its tables
            if item.is_video:
                image |= {"video": item.original_id, "frame_index": frame.index}
            self.images.append(image)
            for label in frame.labels:
                if label.accepted:
                    self.annotations.append(
                        {
                            "id": self.annotations.count + 1,
                            "image_id": image_id,
                            "category_id": label.category.id,
                            "segmentation": _segmentation(label),
                            "area": label.area,
                            "bbox": list(label.bbox),
                            "iscrowd": 0,
                            "score": label.score,
                            "prompt": label.prompt,
                            "seg_score": label.seg_score,
                            "mask_score": label.mask_score,
                            "stability": json_number(label.stability),
                        }
                    )
        if self.copy_images:
            copy_frames(item, parent(self.out), names)

    def close(self) -> None:
        categories = [{"id": c.id, "name": c.name, "supercategory": "object"} for c in self.ontology.category_list()]
        parts = [("info", self.info), ("images", self.images), ("annotations", self.annotations)]
        write_document(self.out, [*parts, ("categories", categories)])


class CocoResultsWriter:
    """The list of ``{"image_id", "category_id", "segmentation", "score"}`` for ``COCO.loadRes``."""

    def __init__(self, out: str, ontology: Ontology, info: dict, **_) -> None:
        self.out, self.results = out, JsonArray()

    def add(self, item: LabelledSample, image_ids: list[int]) -> None:
        for frame, image_id in zip(item.frames, image_ids, strict=True):
            for label in frame.labels:
                if label.accepted:
                    self.results.append(
                        {
                            "image_id": image_id,
                            "category_id": label.category.id,
                            "segmentation": _segmentation(label),
                            "score": label.score,
                        }
                    )

    def close(self) -> None:
        write_array(self.out, self.results)
