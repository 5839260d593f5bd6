"""The synthetic world written in the official layouts reads back exactly: through our converters, make_shards, and
the way LISA and VISA read the files."""

import copy
import hashlib
import json
import pickle
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipeline.data import read_samples, rle
from pipeline.data.layouts import FORMATS
from pipeline.data.layouts.refcoco import IMAGE_DIR
from pipeline.data.reader import Sample, decode_image
from pipeline.synth import samples, write

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import make_shards  # noqa: E402
import make_synth  # noqa: E402

IMAGES, REASONSEG_IMAGES, VIDEOS, FRAMES = 8, 4, 3, 4  # val image 7 has occluded objects


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    write.write_refcoco(base / "refer_seg", split="val", count=IMAGES)
    write.write_reasonseg(base / "ReasonSeg", split="val", count=REASONSEG_IMAGES)
    write.write_revos(base / "ReVOS", split="valid", count=VIDEOS, frames=FRAMES)
    return {"refcoco": base / "refer_seg", "reasonseg": base / "ReasonSeg", "revos": base / "ReVOS"}


def _index(roots: dict[str, Path], fmt: str, split: str) -> list[dict]:
    path = roots[fmt] / ("refcoco" if fmt == "refcoco" else "") / write.INDEX_NAME
    return [r for r in write.read_index(path) if r["split"] == split]


@cache
def _rebuilt(fmt: str, seed: tuple[str, str, int]):
    """The generator's sample of a seed, as the writer drew it."""
    rng = samples.generator(*seed)
    if fmt == "refcoco":
        return samples.refcoco_image(rng)
    if fmt == "reasonseg":
        return samples.reasonseg_image(rng, raster=write.labelme_raster)
    return samples.revos_video(rng, FRAMES)


def _expected(fmt: str, record: dict) -> tuple[str, str, list[np.ndarray], list[np.ndarray]]:
    """Text, kind, the target per frame (union of the targets' visible masks) and the frames, from the generator."""
    sample = _rebuilt(fmt, tuple(record["seed"]))
    expression = sample.expressions[record["expression_index"]]
    if fmt == "revos":
        tracks = sample.video.tracks
        masks = [np.logical_or.reduce([tracks[t].masks[f] for t in expression.targets]) for f in range(FRAMES)]
        return expression.text, expression.kind, masks, sample.video.frames
    scene = sample.scene
    mask = np.logical_or.reduce([scene.objects[t].visible for t in expression.targets])
    return expression.text, expression.kind, [mask], [scene.image]


def _mismatches(fmt: str, converted: list[Sample], records: list[dict]) -> list[str]:
    """How converted samples differ from the generator, expression by expression, frame by frame."""
    wanted = {(r["original_id"], r["expression_id"]): r for r in records}
    problems, seen = [], set()
    for sample in converted:
        original = sample.meta["source"]["original_id"]
        for expression in sample.expressions:
            key = (original, expression.id)
            if key not in wanted:
                problems.append(f"{key}: not in synth_index.json")
                continue
            seen.add(key)
            if sample.key != wanted[key]["sample_key"]:  # metrics rows carry the key: the study joins on it
                problems.append(f"{key}: sample key {sample.key} != {wanted[key]['sample_key']}")
            text, kind, masks, frames = _expected(fmt, wanted[key])
            if (expression.text, expression.kind) != (text, kind):
                problems.append(f"{key}: {expression.text!r} {expression.kind} != {text!r} {kind}")
            area = round(float(np.mean([m.mean() for m in masks])), 6)
            if wanted[key]["target_area_fraction"] != area:
                problems.append(f"{key}: target_area_fraction {wanted[key]['target_area_fraction']} != {area}")
            decoded = sample.frames()
            for f, (mask, pixels) in enumerate(zip(masks, frames, strict=True)):
                if not np.array_equal(sample.target(expression, f), mask):
                    problems.append(f"{key} frame {f}: target differs")
                if np.abs(decoded[f].astype(int) - pixels).mean() > 4:  # JPEG at quality 92
                    problems.append(f"{key} frame {f}: pixels differ from the rendering")
    problems += [f"{key}: in synth_index.json, not converted" for key in sorted(set(wanted) - seen)]
    return problems


def _converted(fmt: str, root: Path, split: str) -> list[Sample]:
    return [Sample(s.key, "", s.meta, s.members) for s in FORMATS[fmt](root, split=split)]


@pytest.mark.parametrize(("fmt", "split"), [("refcoco", "val"), ("reasonseg", "val"), ("revos", "valid")])
def test_converters_read_back_the_generator_exactly(roots, fmt, split):
    records = _index(roots, fmt, split)
    assert len(records) >= {"refcoco": IMAGES, "reasonseg": REASONSEG_IMAGES, "revos": VIDEOS}[fmt]
    assert _mismatches(fmt, _converted(fmt, roots[fmt], split), records) == []


def test_make_shards_reads_the_written_layout(roots, tmp_path):
    out = tmp_path / "shards"
    assert make_shards.main(["--format", "revos", "--root", str(roots["revos"]), "--out", str(out)]) == 0
    converted = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in converted) and len(converted) == VIDEOS
    assert all("/" in s.meta["source"]["original_id"] for s in converted)
    assert _mismatches("revos", converted, _index(roots, "revos", "valid")) == []


def _lisa_refcoco(root: Path, split: str):
    """(ref, mask) as LISA's ValDataset builds them: refer.py's plain ``pickle.load``, frPyObjects for polygons,
    counts re-encoded to bytes for RLEs, decode summed over axis 2 as uint8."""
    refs = pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())  # noqa: S301 (our own file)
    instances = json.loads((root / "refcoco" / "instances.json").read_text())
    images = {i["id"]: i for i in instances["images"]}
    annotations = {a["id"]: a for a in instances["annotations"]}
    for ref in refs:
        if ref["split"] == split:
            yield ref, _lisa_mask(annotations[ref["ann_id"]], images[ref["image_id"]])


def _lisa_mask(annotation: dict, image: dict) -> np.ndarray:
    segmentation = copy.deepcopy(annotation["segmentation"])
    if isinstance(segmentation[0], list):
        encoded = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
    else:
        encoded = segmentation
        for part in encoded:
            if not isinstance(part["counts"], bytes):
                part["counts"] = part["counts"].encode()
    return np.sum(mask_utils.decode(encoded), axis=2).astype(np.uint8)


def test_refcoco_reads_back_as_lisa_reads_it(roots):
    root = roots["refcoco"]
    by_sentence = {r["expression_id"]: r for r in _index(roots, "refcoco", "val")}
    checked = 0
    for ref, mask in _lisa_refcoco(root, "val"):
        (sentence,) = ref["sentences"]
        assert sentence["tokens"] == sentence["sent"].split(" ") and ref["sent_ids"] == [sentence["sent_id"]]
        text, _, (target,), _ = _expected("refcoco", by_sentence[str(sentence["sent_id"])])
        assert sentence["sent"] == text and np.array_equal(mask, target.astype(np.uint8)), ref["ref_id"]
        checked += 1
    assert checked == len(by_sentence)


def test_every_object_is_annotated_polygon_or_rle(roots):
    """One annotation per object in paint order: a polygon when nothing covers it, else ``[RLE]`` of what shows."""
    instances = json.loads((roots["refcoco"] / "refcoco" / "instances.json").read_text())
    records = {r["original_id"]: r for r in _index(roots, "refcoco", "val")}
    forms = set()
    for image in instances["images"]:
        scene = _rebuilt("refcoco", tuple(records[image["file_name"]]["seed"])).scene
        annotations = sorted(
            (a for a in instances["annotations"] if a["image_id"] == image["id"]), key=lambda a: a["id"]
        )
        assert len(annotations) == len(scene.objects)
        for annotation, obj in zip(annotations, scene.objects, strict=True):
            polygon = isinstance(annotation["segmentation"][0], list)
            forms.add("polygon" if polygon else "rle")
            assert polygon == np.array_equal(obj.visible, obj.full)
            assert np.array_equal(_lisa_mask(annotation, image), obj.visible)
            assert annotation["area"] == obj.visible.sum() and annotation["iscrowd"] == 0
            assert instances["categories"][annotation["category_id"] - 1]["name"] == obj.shape
    assert forms == {"polygon", "rle"}


def test_revos_masks_read_as_visa_reads_them(roots):
    """VISA's eval sums the anno_ids' masks in uint8 per frame; the foreground is the OR of every named anno_id."""
    root = roots["revos"]
    mask_dict = json.loads((root / "mask_dict.json").read_text())
    foreground = json.loads((root / "mask_dict_foreground.json").read_text())
    meta = json.loads((root / "meta_expressions_valid_.json").read_text())["videos"]
    records = {(r["original_id"], r["expression_id"]): r for r in _index(roots, "revos", "valid")}
    for video, entry in meta.items():
        assert (root / "JPEGImages" / video / f"{entry['frames'][-1]}.jpg").is_file()
        named = sorted({a for e in entry["expressions"].values() for a in e["anno_id"]})
        for t in range(len(entry["frames"])):
            union = np.zeros((entry["height"], entry["width"]), dtype=bool)
            for anno in named:
                union |= mask_utils.decode(
                    {**mask_dict[str(anno)][t], "counts": mask_dict[str(anno)][t]["counts"].encode()}
                ).astype(bool)
            fg = rle.decode(foreground[video]["masks_rle"][t])
            assert np.array_equal(fg, union) and foreground[video]["foreground_ratio"][t] == union.mean()
            for exp_id, fields in entry["expressions"].items():
                gt = np.zeros(union.shape, dtype=np.uint8)
                for anno in fields["anno_id"]:
                    gt += rle.decode(mask_dict[str(anno)][t]).astype(np.uint8)
                text, kind, masks, _ = _expected("revos", records[(video, exp_id)])
                assert fields["exp"] == text and fields["type_id"] == {"referring": 0, "reasoning": 1}[kind]
                assert np.array_equal(gt, masks[t].astype(np.uint8)), (video, exp_id, t)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writing_is_deterministic(tmp_path):
    for name in ("a", "b"):
        write.write_refcoco(tmp_path / name, split="val", count=2)
        write.write_revos(tmp_path / name / "revos", split="valid", count=1, frames=3)
    files = [
        Path("refcoco/instances.json"),
        Path("refcoco/refs(unc).p"),
        Path("refcoco") / write.INDEX_NAME,
        IMAGE_DIR / "COCO_train2014_000020000001.jpg",
        Path("revos/mask_dict.json"),
        Path("revos/JPEGImages/synth/valid/00000/00002.jpg"),
    ]
    for file in files:
        assert _digest(tmp_path / "a" / file) == _digest(tmp_path / "b" / file), file


def test_train_and_val_draw_different_images(tmp_path):
    root = tmp_path / "refer_seg"
    write.write_refcoco(root, split="val", count=50)
    write.write_refcoco(root, split="train", count=50)
    images = sorted((root / IMAGE_DIR).glob("*.jpg"))
    assert len(images) == 100 and len({_digest(p) for p in images}) == 100
    assert len({decode_image(p.read_bytes()).tobytes() for p in images}) == 100
    # Both splits live in one refer-API root, as RefCOCO's do.
    assert [len(list(FORMATS["refcoco"](root, split=s))) for s in ("val", "train")] == [50, 50]


def test_splits_merge_into_one_root(tmp_path):
    root = tmp_path / "ReVOS"
    write.write_revos(root, split="valid", count=2, frames=2)
    write.write_revos(root, split="train", count=2, frames=2)
    before = {name: (root / name).read_bytes() for name in ("mask_dict.json", "mask_dict_foreground.json")}
    write.write_revos(root, split="valid", count=2, frames=2)  # rewriting a split replaces its entries
    assert {name: (root / name).read_bytes() for name in before} == before
    mask_dict = json.loads(before["mask_dict.json"])
    train = [a for a in mask_dict if int(a) // write.ID_SPAN == write.REVOS_SPLITS["train"][0]]
    assert train and len(mask_dict) > len(train)
    for split in ("train", "valid"):
        converted = _converted("revos", root, split)
        assert len(converted) == 2 and all(
            s.meta["source"]["original_id"].startswith(f"synth/{split}/") for s in converted
        )
    assert {r["split"] for r in write.read_index(root / write.INDEX_NAME)} == {"train", "valid"}


def test_make_synth_cli(tmp_path, capsys):
    out = tmp_path / "ReasonSeg"
    assert make_synth.main(["--format", "reasonseg", "--split", "val", "--count", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [f"wrote reasonseg val: 2 samples, 2 expressions under {out}"]
    assert sorted(p.name for p in (out / "val").iterdir()) == [
        "00000000_synth.jpg",
        "00000000_synth.json",
        "00000001_synth.jpg",
        "00000001_synth.json",
    ]
    for bad in (["--format", "revos", "--split", "val"], ["--format", "refcoco", "--frames", "3"], ["--format", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            make_synth.main([*bad, "--count", "2", "--out", str(tmp_path / "bad")])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("make_synth.py: error:")
    assert make_synth.main(["--format", "revos", "--count", "2000000", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_rewriting_reasonseg_with_fewer_images_drops_the_rest(tmp_path):
    root = tmp_path / "ReasonSeg"
    write.write_reasonseg(root, split="val", count=3)
    (root / "val" / "notes.json").write_text("{}")  # not the writer's: left alone
    write.write_reasonseg(root, split="val", count=1)
    assert sorted(p.name for p in (root / "val").iterdir()) == [
        "00000000_synth.jpg",
        "00000000_synth.json",
        "notes.json",
    ]
    assert [s.meta["source"]["original_id"] for s in _converted("reasonseg", root, "val")] == ["00000000_synth.jpg"]
    assert [r["original_id"] for r in write.read_index(root / write.INDEX_NAME)] == ["00000000_synth.jpg"]
