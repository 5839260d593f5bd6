"""Ref-DAVIS17 converter: the fixture's official layout -> shards -> read back, faithful to ReferFormer's numbering."""

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.data import read_samples, write_shards
from pipeline.data.fixtures.refdavis import write_refdavis
from pipeline.data.layouts import refdavis


@pytest.fixture
def fixture(tmp_path):
    return write_refdavis(tmp_path / "ref-davis")


def round_trip(root, out, **options):
    write_shards(refdavis.convert(root, **options), str(out), prefix="refdavis")
    samples = list(read_samples(str(out / "manifest.json")))
    assert all(hasattr(s, "frames") for s in samples), samples  # no ReadError
    return samples


@pytest.mark.parametrize("split", ["val", "train"])
def test_every_expression_mask_and_frame_survives(fixture, tmp_path, split):
    samples = round_trip(fixture.root, tmp_path / "shards", split=split)
    expected = fixture.split(split)
    assert [s.meta["source"]["original_id"] for s in samples] == [e.name for e in expected]
    for sample, sequence in zip(samples, expected, strict=True):
        assert sample.meta["source"]["dataset"] == "refdavis" and sample.meta["source"]["split"] == split
        assert sample.expressions == sequence.expressions
        origins = sample.meta["source"]["ids"]["expressions"]
        assert {i: (o["annotator"], o["annotation"], o["anno_set"]) for i, o in origins.items()} == sequence.origins
        assert sample.frame_names == sequence.frame_names
        members = sample.meta["media"]["members"]
        assert [sample.members[m] for m in members] == [p.read_bytes() for p in sequence.frame_paths]
        for frame, path in zip(sample.frames(), sequence.frame_paths, strict=True):
            with Image.open(path) as image:
                assert np.array_equal(frame, np.asarray(image.convert("RGB")))
        assert set(sample.meta["gt"]["objects"]) == set(sequence.masks)
        for object_id, masks in sequence.masks.items():
            for t, mask in enumerate(masks):
                decoded = sample.mask(object_id, t)
                assert (decoded is None) == (not mask.any())  # absent on a frame -> null
                if decoded is not None:
                    assert np.array_equal(decoded, mask)
        if sequence.void is None:
            assert sample.meta["gt"]["ignore"] is None
        else:
            for t, void in enumerate(sequence.void):
                decoded = sample.ignore(t)
                assert (decoded is None) == (not void.any())
                assert decoded is None or np.array_equal(decoded, void)
        for expression in sequence.expressions:
            assert np.array_equal(sample.target(expression, 0), sequence.masks[expression.object_ids[0]][0])


def test_objects_sort_as_strings_and_zip_drops_extra_lines(fixture, caplog):
    (train,) = refdavis.convert(fixture.root, split="train")
    assert [e["object_ids"] for e in train.meta["expressions"]][::4] == [["10"], ["2"]]  # "10" < "2"
    with caplog.at_level(logging.WARNING, logger=refdavis.__name__):
        bike = next(refdavis.convert(fixture.root, split="val"))
    assert len(bike.meta["expressions"]) == 8
    assert all("zip drops" not in e["text"] for e in bike.meta["expressions"])
    assert "dropped" in caplog.text and "bike-packing" in caplog.text


def test_rerun_gives_byte_identical_shards(fixture, tmp_path):
    for name in ("a", "b"):
        write_shards(refdavis.convert(fixture.root, split="val"), str(tmp_path / name), prefix="refdavis")
    manifests = [json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b")]
    assert [s["sha256"] for s in manifests[0]["shards"]] == [s["sha256"] for s in manifests[1]["shards"]]


def test_davis_root_and_text_root_options(fixture, tmp_path):
    davis, texts = tmp_path / "elsewhere" / "DAVIS2017", tmp_path / "texts"
    shutil.move(fixture.davis_root, davis)
    shutil.move(fixture.text_root, texts)
    samples = list(refdavis.convert(tmp_path / "nowhere", split="val", davis_root=davis, text_root=texts))
    assert [s.key for s in samples] == ["bike-packing", "classic-car"]


def test_text_lines_follow_referformer_parsing(tmp_path):
    path = tmp_path / "Davis17_annot2.txt"
    lines = 'motor-bike 3   "a red   motorbike"\r\n\ndog-scale 1 "un chien allemand \xe9"\nbear 1 "wait\x85 a bear"'
    path.write_bytes(lines.encode("latin-1"))
    videos = refdavis.read_text_file(path, "latin-1")
    assert [(e.obj_id, e.text, e.line) for e in videos["motorbike"]] == [("3", "a red motorbike", 1)]
    assert videos["dogs-scale"][0].text == "un chien allemand é"
    # byte 0x85 (cp1252's ellipsis) is latin-1 U+0085: whitespace to str.split, but no line break to readlines
    assert [(e.text, e.line) for e in videos["bear"]] == [("wait a bear", 4)]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: None, "split must be one of"),
        (lambda f: (f.davis_root / "ImageSets/2017/val.txt").unlink(), "split file not found"),
        (lambda f: (f.text_root / "Davis17_annot1_full_video.txt").unlink(), "text annotation file not found"),
        (lambda f: (f.text_root / "Davis17_annot1.txt").write_bytes(b'bike-packing 1 "caf\xe9"\n'), "not utf-8"),
        (lambda f: (f.text_root / "Davis17_annot1.txt").write_text("bike-packing 1\n"), "expected '<video>"),
        (lambda f: (f.text_root / "Davis17_annot1.txt").write_text('bike-packing x "a"\n'), "is not an integer"),
        (lambda f: (f.text_root / "Davis17_annot1.txt").write_text('gold-fish 1 "a"\n'), "no expression for"),
        (lambda f: (f.davis_root / "Annotations_unsupervised/480p/bike-packing/00001.png").unlink(), "PNG missing"),
        (
            lambda f: Image.new("RGB", (48, 40)).save(
                f.davis_root / "Annotations_unsupervised/480p/classic-car/00000.png"
            ),
            "indexed (P or L) PNG",
        ),
        (
            lambda f: Image.new("L", (8, 8)).save(
                f.davis_root / "Annotations_unsupervised/480p/classic-car/00000.png"
            ),
            "annotation is 8x8",
        ),
        (
            lambda f: Image.new("RGB", (8, 8)).save(f.davis_root / "JPEGImages/480p/classic-car/00002.jpg"),
            "frame is 8x8",
        ),
        (
            lambda f: (f.davis_root / "JPEGImages/480p/classic-car/00001.jpg").write_bytes(b"\xff\xd8junk"),
            "not a readable",
        ),
        (lambda f: shutil.rmtree(f.davis_root / "JPEGImages/480p/bike-packing"), "no JPEG frames"),
    ],
)
def test_malformed_inputs_raise_naming_the_problem(fixture, damage, message):
    damage(fixture)
    split = "test" if message == "split must be one of" else "val"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(refdavis.convert(fixture.root, split=split))
