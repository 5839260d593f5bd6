"""Exports read back by the ecosystem's own readers (pycocotools, label-studio-sdk, PIL) equal the Parquet masks."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipeline.data import read_samples
from pipeline.results import decode_mask, load


def parquet(run: str) -> dict:
    """(sample key, frame name, prompt) -> (mask, predictions row)."""
    predictions = load(run, "predictions")
    return {(r.sample_key, r.frame_name, r.expression_text): (decode_mask(r), r) for _, r in predictions.iterrows()}


def shard_members(run: str) -> dict:
    """Sample key -> the sample, from the run's input shards."""
    config = json.loads((Path(run) / "_config.json").read_text())
    return {s.key: s for s in read_samples(config["data"]["shards"])}


def test_coco_dataset_reads_back_exactly_through_pycocotools(run, exported):
    out = exported("coco", "--copy-images")
    coco = COCO(str(out))
    masks = parquet(run)
    assert len(coco.dataset["images"]) == len({k[:2] for k in masks}) == 17  # 9 pictures, 8 video frames
    assert len(coco.getAnnIds()) == sum(row.area > 0 for _, row in masks.values())  # default: non-empty masks
    prompts = sorted({k[2] for k in masks})
    assert [(c["id"], c["name"]) for c in coco.dataset["categories"]] == list(enumerate(prompts, start=1))
    for annotation in coco.dataset["annotations"]:
        image = coco.imgs[annotation["image_id"]]
        prompt = coco.cats[annotation["category_id"]]["name"]
        mask, row = masks[(image["sample_key"], image["frame_name"], prompt)]
        assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
        assert annotation["area"] == row.area > 0 and annotation["bbox"] == list(row.bbox)
        assert annotation["iscrowd"] == 0 and annotation["score"] == pytest.approx(row.score)
        assert isinstance(annotation["segmentation"]["counts"], str)
        assert (image["height"], image["width"]) == mask.shape
    # --copy-images: the dataset stands alone; image files are the shard's bytes, mp4 frames decoded to JPEG.
    samples = shard_members(run)
    for image in coco.dataset["images"]:
        path = out.parent / image["file_name"]
        sample = samples[image["sample_key"]]
        if sample.meta["media"]["type"] == "image":
            assert path.read_bytes() == sample.members[sample.meta["media"]["member"]]
        assert Image.open(path).size == (image["width"], image["height"])


def test_coco_results_load_against_the_dataset(run, exported):
    dataset = COCO(str(exported("coco")))
    results = json.loads(exported("coco-results", "--min-score", "0.6").read_text())
    predictions = load(run, "predictions")
    assert len(results) == int(((predictions.score >= 0.6) & (predictions.area > 0)).sum()) > 0
    loaded = dataset.loadRes(results)
    assert set(loaded.getImgIds()) <= set(dataset.getImgIds())
    for annotation in loaded.dataset["annotations"]:
        assert annotation["score"] >= 0.6 and annotation["category_id"] in dataset.cats


def test_sav_masklets_equal_the_parquet_masks(run, exported):
    out = exported("sav")
    files = sorted(out.glob("*_auto.json"))
    predictions = load(run, "predictions")
    videos = predictions[predictions.frame_index > 0].sample_key.unique()
    assert [f.name for f in files] == [f"{k}_auto.json" for k in sorted(videos)]
    masks = parquet(run)
    for file in files:
        video = json.loads(file.read_text())
        key, frames = video["video_id"], video["video_frame_names"]
        assert video["video_frame_count"] == len(video["masklet"]) == len(frames) == 8
        visible = {p for (k, _, p), (_, row) in masks.items() if k == key and row.area > 0}
        assert video["masklet_num"] == len(video["masklet_id"]) == len(visible) > 0
        assert sorted(video["masklet_prompt"]) == sorted(visible)
        for t, per_object in enumerate(video["masklet"]):
            for o, encoded in enumerate(per_object):
                expected, _ = masks[(key, frames[t], video["masklet_prompt"][o])]
                decoded = mask_utils.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
                assert np.array_equal(decoded.astype(bool), expected), (key, t, o)
        assert all(0 <= v <= 1 for v in video["masklet_present_fraction"])


def test_davis_pngs_hold_one_id_per_prompt(run, exported):
    out = exported("davis")
    meta = json.loads((out / "meta.json").read_text())
    masks = parquet(run)
    for video in meta["videos"]:
        for frame in video["frames"]:
            png = Image.open(out / "Annotations" / video["video"] / f"{frame}.png")
            assert png.mode == "P"
            ids = np.asarray(png)
            objects = {int(i): o for i, o in video["objects"].items()}
            truth = {i: masks[(video["video"], frame, o["prompt"])][0] for i, o in objects.items()}
            overlap = sum(m.astype(int) for m in truth.values()) > 1
            for i, mask in truth.items():
                # Each id covers its prompt's mask except where a higher-scored mask overlaps it.
                assert np.array_equal((ids == i) & ~overlap, mask & ~overlap)
            assert np.array_equal(ids > 0, np.logical_or.reduce(list(truth.values())))


def test_an_export_is_deterministic(exported, tmp_path):
    first = exported("coco").read_bytes()
    assert exported("coco").read_bytes() == first


def test_the_ontology_merges_prompts_into_one_category(run, exported, tmp_path):
    ontology = tmp_path / "ontology.yaml"
    prompts = sorted(load(run, "predictions").expression_text.unique())
    ontology.write_text("".join(f"{p}: {{name: thing, id: 3}}\n" for p in prompts))
    coco = COCO(str(exported("coco", "--ontology", str(ontology))))
    assert coco.dataset["categories"] == [{"id": 3, "name": "thing", "supercategory": "object"}]
    assert {a["category_id"] for a in coco.dataset["annotations"]} == {3}
    assert {a["prompt"] for a in coco.dataset["annotations"]} == set(prompts)


def test_configuration_errors_are_one_line_before_any_output(run, tmp_path, capsys):
    import export_labels

    ontology = tmp_path / "partial.json"
    ontology.write_text('{"the red circle": "circle", "the blue square": "square", "the green triangle": "triangle"}')
    out = tmp_path / "never"
    for flags, message in [
        (["--ontology", str(ontology)], "2 prompts are not in the ontology: 'the largest shape'; 'the yellow shape'"),
        (["--min-score", "2"], "min_score must be in [0, 1]"),
        (["--ontology", str(tmp_path / "missing.yaml")], "cannot read the ontology"),
        (["--run", str(tmp_path / "no-run")], "is not a run folder"),
    ]:
        code = export_labels.main(["--run", run, "--format", "coco", "--out", str(out / "x.json"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_dedup_and_thresholds_through_the_job(run, exported):
    predictions = load(run, "predictions")
    kept = COCO(str(exported("coco", "--min-stability", "0.7", "--max-area-fraction", "0.07")))
    passing = (predictions.stability >= 0.7) & (predictions.area_fraction <= 0.07) & (predictions.area > 0)
    expected = predictions[passing]
    assert len(kept.dataset["annotations"]) == len(expected) > 0
    # A threshold of 0 removes, on each frame, every mask that overlaps a higher-scored one at all.
    deduped = COCO(str(exported("coco", "--dedup-iou", "0")))
    for image_id in deduped.getImgIds():
        anns = deduped.loadAnns(deduped.getAnnIds(imgIds=image_id))
        masks = [deduped.annToMask(a).astype(bool) for a in anns]
        assert all(not (a & b).any() for i, a in enumerate(masks) for b in masks[i + 1 :])
    assert len(deduped.dataset["annotations"]) < len(predictions)


def test_label_studio_tasks_decode_equal_through_label_studio_sdk(run, exported):
    from label_studio_sdk.converter.brush import decode_rle
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.labels.export import model_version

    out = exported("labelstudio", "--image-url-prefix", "/data/local-files/?d=corpus/")
    tasks = json.loads(out.read_text())
    masks = parquet(run)
    assert len(tasks) == len({k[:2] for k in masks})  # one task per picture and video frame
    decoded_count = 0
    for task in tasks:
        assert task["data"]["image"].startswith("/data/local-files/?d=corpus/")
        for prediction in task["predictions"]:
            assert prediction["model_version"] == model_version(run)
            for result in prediction["result"]:
                h, w = result["original_height"], result["original_width"]
                decoded = np.asarray(decode_rle(result["value"]["rle"])).reshape(h, w, 4)[:, :, 3] > 0
                prompt = result["value"]["brushlabels"][0]  # no ontology: a prompt is its own category
                expected, row = masks[(task["data"]["key"], task["data"]["frame"], prompt)]
                assert np.array_equal(decoded, expected) and result["score"] == pytest.approx(row.score)
                assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
                decoded_count += 1
    assert decoded_count == sum(row.area > 0 for _, row in masks.values())
    # The labelling config beside the tasks parses, with the tag names and labels the results use.
    interface = LabelInterface((out.parent / "label_config.xml").read_text())
    assert set(interface.get_tag("label").labels) == {k[2] for k in masks}


def test_the_brush_encoding_decodes_through_label_studio_sdk():
    from label_studio_sdk.converter.brush import decode_rle

    from pipeline.labels.brush import encode

    rng = np.random.default_rng(0)
    cases = [rng.random((h, w)) < p for h, w, p in [(1, 1, 0.5), (7, 13, 0.3), (40, 30, 0.9), (64, 64, 0.02)]]
    cases += [np.ones((300, 300), dtype=bool), np.zeros((17, 5), dtype=bool)]  # runs longer than 2**16 values
    for mask in cases:
        decoded = np.asarray(decode_rle(encode(mask))).reshape(*mask.shape, 4)
        assert np.array_equal(decoded[:, :, 3] > 0, mask) and set(np.unique(decoded)) <= {0, 255}


def test_a_run_and_its_exports_on_an_fsspec_url(tmp_path):
    """The job writes its tables, exports and QC sheet to memory://, and they read back from there."""
    import fsspec
    import pseudo_label

    from pipeline.data.fixtures.folder import write_folder
    from pipeline.data.layouts import FORMATS
    from pipeline.engine.cli import fixture_shards

    corpus = write_folder(str(tmp_path / "corpus"))
    shards = fixture_shards(tmp_path, FORMATS["folder"](corpus.corpus, fps=2, prompts=corpus.prompts_path))
    run = "memory://labels-test/run"
    args = ["--shards", shards, "--output", run, "--no-ray", "--export", "coco,davis", "--min-score", "0"]
    assert pseudo_label.main(args) == 0
    fs = fsspec.filesystem("memory")
    local = tmp_path / "coco.json"
    local.write_bytes(fs.cat_file("/labels-test/run/exports/coco.json"))
    coco = COCO(str(local))
    masks = parquet(run)
    assert len(coco.dataset["annotations"]) == sum(row.area > 0 for _, row in masks.values()) > 0
    for annotation in coco.dataset["annotations"]:
        image = coco.imgs[annotation["image_id"]]
        expected, _ = masks[(image["sample_key"], image["frame_name"], annotation["prompt"])]
        assert np.array_equal(coco.annToMask(annotation).astype(bool), expected)
    assert fs.exists("/labels-test/run/exports/qc/index.html")
    assert fs.exists("/labels-test/run/exports/davis/meta.json")
    fs.rm("/labels-test", recursive=True)
