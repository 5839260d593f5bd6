"""Label Studio tasks with pre-annotations: one task per image or video frame, its accepted masks as
``brushlabels`` predictions in Label Studio's own RLE (``brush``), and the labelling config they need.

Import the JSON into a project whose labelling config is the ``label_config.xml`` written beside it; the images
are read from ``--image-url-prefix`` + the file name (for example a local-files or bucket URL).
"""

from .brush import encode
from .files import JsonArray, copy_frames, frame_files, parent, write_array, write_text
from .ontology import Ontology
from .source import LabelledSample, decode

FROM_NAME, TO_NAME = "label", "image"


def label_config(ontology: Ontology) -> str:
    """The labelling config whose tag names the tasks' results refer to."""
    from xml.sax.saxutils import quoteattr

    labels = "".join(f"\n    <Label value={quoteattr(c.name)}/>" for c in ontology.category_list())
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}\n  </BrushLabels>\n</View>\n'
    )


class LabelStudioWriter:
    def __init__(
        self,
        out: str,
        ontology: Ontology,
        info: dict,
        *,
        copy_images: bool = False,
        image_url_prefix: str = "",
    ) -> None:
        self.out, self.ontology, self.copy_images = out, ontology, copy_images
        self.prefix, self.model_version = image_url_prefix, info["model_version"]
        self.tasks = JsonArray()

    def add(self, item: LabelledSample, image_ids: list[int]) -> None:
        names = frame_files(item, self.copy_images)
        for (frame, name), image_id in zip(names, image_ids, strict=True):
            accepted = [label for label in frame.labels if label.accepted]
            results = [
                {
                    "id": f"{image_id}-{n}",
                    "type": "brushlabels",
                    "from_name": FROM_NAME,
                    "to_name": TO_NAME,
                    "original_width": frame.width,
                    "original_height": frame.height,
                    "image_rotation": 0,
                    "value": {"format": "rle", "rle": encode(decode(label)), "brushlabels": [label.category.name]},
                    "score": label.score,
                }
                for n, label in enumerate(accepted)
            ]
            data = {"image": self.prefix + name, "key": item.key, "frame": frame.name, "image_id": image_id}
            predictions = []
            if results:
                score = min(label.score for label in accepted)  # the task's weakest mask: what review should see first
                predictions.append({"model_version": self.model_version, "score": score, "result": results})
            self.tasks.append({"data": data, "predictions": predictions})
        if self.copy_images:
            copy_frames(item, parent(self.out), names)

    def close(self) -> None:
        write_array(self.out, self.tasks)
        write_text(f"{parent(self.out)}/label_config.xml", label_config(self.ontology))
