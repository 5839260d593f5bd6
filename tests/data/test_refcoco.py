"""RefCOCO converter: refer-API fixture -> samples -> shards -> read back, faithfully; bad layouts fail loudly."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import make_key, read_samples, rle, write_shards
from pipeline.data.fixtures.refcoco import (
    image_mismatches,
    py2_pickle,
    rectangle,
    uncompressed_rle,
    write_refcoco,
)
from pipeline.data.layouts import refcoco
from pipeline.data.reader import Sample
from pipeline.data.safe_pickle import UnsafePickleError, load_plain


def _round_trip(samples, out: Path) -> list[Sample]:
    write_shards(samples, str(out), prefix="t")
    read = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in read), read
    return read


def _edit_refs(root: Path, change, name: str = "refs(unc).p") -> None:
    path = root / "refcoco" / name
    refs = load_plain(path)
    change(refs)
    path.write_bytes(py2_pickle(refs))


def _edit_instances(root: Path, change) -> None:
    path = root / "refcoco" / "instances.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("split", ["val", "testA", "train"])
def test_round_trip(tmp_path, split):
    expected = write_refcoco(tmp_path / "refer_seg")[split]
    samples = _round_trip(refcoco.convert(expected.root, split=split), tmp_path / "out")
    assert image_mismatches(samples, expected) == []
    assert [s.key for s in samples] == [
        make_key("refcoco", "unc", split, str(i.ids["image_id"])) for i in expected.images
    ]


def test_val_content(tmp_path):
    expected = write_refcoco(tmp_path / "refer_seg")["val"]
    first, second = _round_trip(refcoco.convert(expected.root, split="val"), tmp_path / "out")
    assert first.meta["source"]["original_id"] == "COCO_train2014_000000000009.jpg"
    assert [(e.id, e.text, e.object_ids) for e in first.expressions] == [
        ("101", "man on the left", ("1001",)),
        ("102", "leftmost guy", ("1001",)),
        ("103", "café table", ("1002",)),  # a Python 2 byte string holding UTF-8
    ]
    assert {e.kind for e in first.expressions} == {"referring"}
    # Two overlapping polygons: the union (LISA's sum would put 2 on the overlap).
    union = rectangle((40, 48), 2, 4, 14, 30) | rectangle((40, 48), 10, 20, 22, 36)
    assert np.array_equal(first.mask("1001"), union)
    ids = first.meta["source"]["ids"]
    assert [r["sent_ids"] for r in ids["refs"]] == [["101", "102"], ["103"]]  # HyperSeg's per-ref pairs
    assert ids["expressions"]["101"] == {"ref_id": 1, "raw": "Man on the left."}
    # Image 25 also has a testA ref (3, annotation 1003): not in val, so not an object of the val sample.
    assert set(second.meta["gt"]["objects"]) == {"1004"}
    assert [e.id for e in second.expressions] == ["105", "106"]


def test_lisa_polygon_overlap(tmp_path):
    expected = write_refcoco(tmp_path / "refer_seg")["val"]
    first, second = refcoco.convert(expected.root, split="val", polygon_overlap="lisa")
    a, b = rectangle((40, 48), 2, 4, 14, 30), rectangle((40, 48), 10, 20, 22, 36)
    assert np.array_equal(rle.decode(first.meta["gt"]["objects"]["1001"][0]), a ^ b)  # LISA's sum == 1
    assert np.array_equal(rle.decode(second.meta["gt"]["objects"]["1004"][0]), expected.images[1].masks["1004"])
    with pytest.raises(ValueError, match="unknown polygon_overlap 'sum'"):
        list(refcoco.convert(expected.root, split="val", polygon_overlap="sum"))


@pytest.mark.parametrize(("overlap", "combine"), [("union", np.logical_or), ("lisa", np.logical_xor)])
def test_list_of_rles_annotation(tmp_path, overlap, combine):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    a, b = rectangle((32, 36), 18, 10, 33, 22), rectangle((32, 36), 5, 5, 20, 15)

    def to_rle_list(data):
        annotation = next(a for a in data["annotations"] if a["id"] == 1004)
        annotation["segmentation"] = [uncompressed_rle(a), uncompressed_rle(b)]  # LISA's grefcoco form

    _edit_instances(root, to_rle_list)
    second = list(refcoco.convert(root, split="val", polygon_overlap=overlap))[1]
    assert np.array_equal(rle.decode(second.meta["gt"]["objects"]["1004"][0]), combine(a, b))


def test_crowd_rle_annotation(tmp_path):
    expected = write_refcoco(tmp_path / "refer_seg")["testA"]
    instances = json.loads((expected.root / "refcoco" / "instances.json").read_text())
    crowd = next(a for a in instances["annotations"] if a["id"] == 1003)
    assert isinstance(crowd["segmentation"]["counts"], list)  # uncompressed, as COCO iscrowd stores it
    (sample,) = _round_trip(refcoco.convert(expected.root, split="testA"), tmp_path / "out")
    assert np.array_equal(sample.mask("1003"), rectangle((32, 36), 3, 3, 13, 29))


def test_test_split_takes_every_test_ref(tmp_path):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    (sample,) = refcoco.convert(root, split="test")
    assert sample.meta["source"]["ids"]["refs"][0]["split"] == "testA"


@pytest.mark.parametrize(
    ("ref_split", "split", "member"),
    [
        ("testA", "testA", True),
        ("testAB", "testA", True),
        ("testAB", "testB", True),
        ("testB", "testA", False),
        ("testB", "test", True),
        ("val", "test", False),
        ("val", "val", True),
        ("train", "val", False),
    ],
)
def test_split_membership_follows_the_refer_api(ref_split, split, member):
    assert refcoco.in_split(ref_split, split) is member


def test_reconversion_is_byte_identical(tmp_path):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    first = write_shards(refcoco.convert(root, split="val"), str(tmp_path / "a"))
    second = write_shards(refcoco.convert(root, split="val"), str(tmp_path / "b"))
    assert [s.sha256 for s in first] == [s.sha256 for s in second]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


@pytest.mark.parametrize(("dataset", "split_by"), [("refcoco+", "unc"), ("refcocog", "umd"), ("refcocog", "google")])
def test_other_datasets_and_split_bys(tmp_path, dataset, split_by):
    expected = write_refcoco(tmp_path / "refer_seg", dataset=dataset, split_by=split_by)["val"]
    options = {"split_by": split_by} if split_by == "google" else {}  # refcoco+ -> unc, refcocog -> umd by default
    samples = _round_trip(refcoco.convert(expected.root, split="val", dataset=dataset, **options), tmp_path / "out")
    assert image_mismatches(samples, expected) == []
    assert {s.meta["source"]["dataset"] for s in samples} == {dataset}
    assert all(s.key == make_key(dataset, split_by, "val", str(s.meta["source"]["ids"]["image_id"])) for s in samples)
    assert all("+" not in s.key and "." not in s.key for s in samples)


def test_image_root_option(tmp_path):
    expected = write_refcoco(tmp_path / "refer_seg")["val"]
    elsewhere = tmp_path / "coco" / "train2014"
    shutil.move(expected.root / "images" / "mscoco" / "images" / "train2014", elsewhere)
    with pytest.raises(ValueError, match="missing image .*image_root="):
        list(refcoco.convert(expected.root, split="val"))
    samples = list(refcoco.convert(expected.root, split="val", image_root=elsewhere))
    assert samples[0].members["jpg"] == (elsewhere / "COCO_train2014_000000000009.jpg").read_bytes()


def test_bad_options(tmp_path):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    with pytest.raises(ValueError, match="unknown dataset 'refclef'"):
        list(refcoco.convert(root, split="val", dataset="refclef"))
    with pytest.raises(ValueError, match="unknown split_by 'berkeley'"):
        list(refcoco.convert(root, split="val", split_by="berkeley"))
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        list(refcoco.convert(root, split="valid"))
    with pytest.raises(
        ValueError, match=r"no ref in split 'testB'; the file's splits are \['testA', 'train', 'val'\]"
    ):
        list(refcoco.convert(root, split="testB"))
    with pytest.raises(ValueError, match=r"refs\(umd\)\.p: missing"):
        list(refcoco.convert(root, split="val", split_by="umd"))


def test_a_malicious_refs_file_is_refused_unrun(tmp_path):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    marker = tmp_path / "pwned"
    # A refs file whose sentence list is os.system("touch <marker>"), written as a Python 2 pickle would be.
    evil = f"\x80\x02]q\x01}}q\x02U\x09sentencesq\x03cos\nsystem\nU{chr(len(f'touch {marker}'))}touch {marker}\x85Rsa."
    (root / "refcoco" / "refs(unc).p").write_bytes(evil.encode("latin-1"))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p: pickle refers to the global os\.system"):
        list(refcoco.convert(root, split="val"))
    assert not marker.exists()


def _drop_annotation(data):
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 1001]


def _taller_image(data):
    data["images"][0]["height"] = 41


def _rle_of_another_size(data):
    next(a for a in data["annotations"] if a["id"] == 1004)["segmentation"] = {"size": [3, 3], "counts": [9]}


def _bad_polygon(data):
    data["annotations"][0]["segmentation"] = [[1.0, 2.0, 3.0]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop_annotation, r"ref_id 1: ann_id 1001 is not in .*instances\.json"),
        (_taller_image, r"COCO_train2014_000000000009\.jpg: is 40x48 but instances\.json says 41x48"),
        (_rle_of_another_size, r"annotation 1004: bad segmentation \(RLE size \[3, 3\] differs"),
        (_bad_polygon, r"annotation 1001: bad segmentation \(polygons must be lists of x, y numbers\)"),
    ],
)
def test_malformed_instances(tmp_path, change, message):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    _edit_instances(root, change)
    with pytest.raises(ValueError, match=message):
        list(refcoco.convert(root, split="val"))


def _repeat_sent_id(refs):
    refs[1]["sentences"][0]["sent_id"] = 101


def _no_sentences(refs):
    refs[0]["sentences"] = []


def _string_ref_id(refs):
    refs[2]["ref_id"] = "3"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_repeat_sent_id, r"ref_id 2: sent_id 101 repeats on image 9"),
        (_no_sentences, r"ref #0 \(ref_id 1\): sentences must be a non-empty list"),
        (_string_ref_id, r"ref #2: ref_id must be an integer, got '3'"),
    ],
)
def test_malformed_refs(tmp_path, change, message):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    _edit_refs(root, change)
    with pytest.raises(ValueError, match=message):
        list(refcoco.convert(root, split="val"))


def test_unreadable_files(tmp_path):
    root = write_refcoco(tmp_path / "refer_seg")["val"].root
    (root / "refcoco" / "instances.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"instances\.json: not valid JSON"):
        list(refcoco.convert(root, split="val"))
    (root / "refcoco" / "refs(unc).p").write_bytes(b"\x80\x02]q\x01(K\x01")
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: not a readable plain pickle"):
        list(refcoco.convert(root, split="val"))
    os.remove(root / "refcoco" / "instances.json")
    (root / "refcoco" / "refs(unc).p").write_bytes(py2_pickle([]))
    with pytest.raises(ValueError, match=r"instances\.json: missing"):
        list(refcoco.convert(root, split="val"))
