"""Ref-YouTube-VOS converter: fixture -> samples -> shards -> read back, faithfully; bad layouts fail loudly."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import read_samples, write_shards
from pipeline.data.fixtures.refytvos import mismatches, write_refytvos
from pipeline.data.layouts import refytvos
from pipeline.data.reader import Sample


def _round_trip(samples, out: Path) -> list[Sample]:
    write_shards(samples, str(out), prefix="t")
    read = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in read), read
    return read


@pytest.fixture
def dataset(tmp_path):
    return write_refytvos(tmp_path / "ref-youtube-vos")


def test_train_round_trip(dataset, tmp_path):
    samples = _round_trip(refytvos.convert(dataset.root, split="train"), tmp_path / "out")
    assert mismatches(samples, dataset.train) == []
    first = samples[0]
    assert [e.object_ids for e in first.expressions] == [("1",), ("2",), ("1",)]
    assert first.meta["gt"]["objects"]["2"][1] is None  # id 2 absent from the frame's PNG: null
    assert first.mask("2", 1) is None and not first.target(first.expressions[1], 1).any()
    # Object 1 of the second video is in meta.json and the PNGs but named by no expression.
    assert set(samples[1].meta["gt"]["objects"]) == {"3"}
    assert samples[1].meta["source"]["ids"]["categories"] == {"1": "cat", "3": "ball"}


def test_annotations_are_palette_pngs(dataset):
    path = next((dataset.root / "train" / "Annotations").rglob("*.png"))
    with Image.open(path) as image:
        assert image.mode == "P" and image.getpalette()[3:6] == [236, 95, 103]


def test_valid_drops_test_videos(dataset, tmp_path):
    samples = _round_trip(refytvos.convert(dataset.root, split="valid"), tmp_path / "out")
    assert mismatches(samples, dataset.valid) == []
    assert all(s.meta["gt"] is None for s in samples)
    assert dataset.test_videos[0] not in [s.meta["source"]["original_id"] for s in samples]
    kept = _round_trip(refytvos.convert(dataset.root, split="valid", drop_test=False), tmp_path / "all")
    assert mismatches(kept, dataset.valid_with_test) == []


def test_valid_without_test_file(dataset):
    (dataset.root / "meta_expressions" / "test" / "meta_expressions.json").unlink()
    with pytest.raises(ValueError, match=r"test/meta_expressions\.json: missing.*drop_test=False"):
        list(refytvos.convert(dataset.root, split="valid"))
    assert len(list(refytvos.convert(dataset.root, split="valid", drop_test=False))) == 3


def test_test_split_frames_from_valid(dataset):
    samples = list(refytvos.convert(dataset.root, split="test", frames_split="valid"))
    assert [s.meta["source"]["original_id"] for s in samples] == list(dataset.test_videos)
    assert samples[0].meta["source"]["split"] == "test" and samples[0].meta["gt"] is None
    with pytest.raises(ValueError, match=r"test/JPEGImages/5555cccc66/00000\.jpg: missing frame"):
        list(refytvos.convert(dataset.root, split="test"))


def test_is_reproducible(dataset, tmp_path):
    manifests = []
    for run in ("a", "b"):
        write_shards(refytvos.convert(dataset.root, split="train"), str(tmp_path / run), prefix="refytvos")
        manifests.append(json.loads((tmp_path / run / "manifest.json").read_text()))
    assert manifests[0]["shards"] == manifests[1]["shards"]
    assert manifests[0]["samples"] == 2


def _png(dataset, video="0a1b2c3d4e", frame="00005") -> Path:
    return dataset.root / "train" / "Annotations" / video / f"{frame}.png"


def _train_meta(dataset) -> Path:
    return dataset.root / "meta_expressions" / "train" / "meta_expressions.json"


def _set_obj(value):
    def change(path: Path):
        data = json.loads(path.read_text())
        data["videos"]["ffee001122"]["expressions"]["0"]["obj_id"] = value
        path.write_text(json.dumps(data))

    return change


BREAKAGES = {
    "no annotations": (
        lambda d: shutil.rmtree(d.root / "train" / "Annotations"),
        r"train/Annotations: missing",
    ),
    "missing png": (lambda d: _png(d).unlink(), r"00005\.png: missing annotation PNG"),
    "rgb png": (
        lambda d: Image.new("RGB", (32, 24)).save(_png(d)),
        r"00005\.png: annotation PNG mode 'RGB'",
    ),
    "png size": (
        lambda d: Image.new("P", (10, 10)).save(_png(d)),
        r"00005\.png: annotation is 10x10, frames are 24x32",
    ),
    "not a png": (lambda d: _png(d).write_bytes(b"nope"), r"00005\.png: unreadable annotation PNG"),
    "obj not int": (lambda d: _set_obj("cat")(_train_meta(d)), "object id 'cat' is not an integer"),
    "obj zero": (lambda d: _set_obj("0")(_train_meta(d)), r"not a palette index in 1\.\.255"),
    "obj missing": (lambda d: _set_obj(None)(_train_meta(d)), "expression '0': obj_id must be a string"),
    "meta json": (lambda d: _train_meta(d).write_text("{"), r"train/meta_expressions\.json: not valid JSON"),
    "meta.json": (lambda d: (d.root / "train" / "meta.json").write_text("[]"), r"train/meta\.json: expected"),
    "frame size": (
        lambda d: Image.new("RGB", (8, 8)).save(d.train.videos[1].frame_paths[2], format="JPEG"),
        r"ffee001122/00010\.jpg: frame is 8x8, expected 20x28 \(the first frame\)",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_malformed_input_raises(dataset, name):
    breaks, message = BREAKAGES[name]
    breaks(dataset)
    with pytest.raises(ValueError, match=message):
        list(refytvos.convert(dataset.root, split="train"))


def test_grey_annotation_pngs_are_read_as_indices(dataset, tmp_path):
    """Mode 'L' PNGs hold the same indices (ReferFormer's convert('P') keeps them): same ground truth."""
    for path in (dataset.root / "train" / "Annotations").rglob("*.png"):
        with Image.open(path) as image:
            labels = np.asarray(image)
        Image.fromarray(labels).save(path)  # mode 'L'
    samples = _round_trip(refytvos.convert(dataset.root, split="train"), tmp_path / "out")
    assert mismatches(samples, dataset.train) == []
