"""Shard writer and reader: round trips, determinism, bounds, any fsspec filesystem, bad input as error rows."""

import json

import fsspec
import numpy as np
import pytest

from pipeline.data import (
    Expression,
    ReadError,
    Sample,
    build_meta,
    read_samples,
    rle,
    validate,
    write_shards,
)
from pipeline.data.reader import MAX_PIXELS, read_shard, repeated_keys, shard_keys, shard_urls
from pipeline.data.sample import SampleError
from tests.samples import bomb_png, image_sample, members_of, raw_tar, video_sample


def test_round_trip_images_and_video(tmp_path):
    samples = [image_sample(i) for i in range(4)] + [video_sample()]
    shards = write_shards(samples, str(tmp_path), prefix="syn", max_samples=2)
    assert [s.uri for s in shards] == ["syn-00000.tar", "syn-00001.tar", "syn-00002.tar"]
    assert [s.samples for s in shards] == [2, 2, 1]
    read = list(read_samples(str(tmp_path / "manifest.json")))
    assert all(isinstance(r, Sample) for r in read)
    for written, got in zip(samples, read, strict=True):
        assert got.key == written.key and got.meta == written.meta
        assert got.members == written.members  # media bytes unchanged
    image = read[0]
    assert image.frames()[0].shape == (24, 32, 3) and not image.is_video
    assert np.array_equal(image.target(image.expressions[0]), rle.decode(samples[0].meta["gt"]["objects"]["obj"][0]))
    assert not image.target(image.expressions[1]).any()  # no-target: empty
    video = read[-1]
    assert video.is_video and video.frame_names == ["00000", "00005", "00010"]
    assert [f[0, 0, 0] for f in video.frames()] == [0, 40, 80]
    assert video.mask("7", 1) is None and np.array_equal(video.mask("7", 2), np.eye(16, 20, k=2, dtype=bool))
    assert video.meta["source"]["original_id"] == "UVO/all/-video.1" and "." not in video.key


def test_rerun_is_byte_identical_and_leaves_no_temporary_files(tmp_path):
    samples = [image_sample(i) for i in range(5)]
    first = write_shards(samples, str(tmp_path / "a"), max_samples=2)
    again = write_shards(samples, str(tmp_path / "a"), max_samples=2)
    other = write_shards(samples, str(tmp_path / "b"), max_samples=2)
    assert first == again == other
    for name in ("shard-00000.tar", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "manifest.json",
        "shard-00000.tar",
        "shard-00001.tar",
        "shard-00002.tar",
    ]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["samples"] == 5 and manifest["shards"][0]["sha256"] == first[0].sha256
    # A shorter re-run removes the stale shards of the longer one.
    write_shards(samples[:2], str(tmp_path / "a"), max_samples=2)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json", "shard-00000.tar"]


def test_shards_are_bounded_in_bytes(tmp_path):
    samples = [image_sample(i, size=(64, 64)) for i in range(6)]
    one = len(samples[0].members["jpg"])
    shards = write_shards(samples, str(tmp_path), max_bytes=3 * one)
    assert len(shards) >= 3 and all(s.bytes <= 3 * one + 10 * 1024 for s in shards)
    assert sum(s.samples for s in shards) == 6


def test_any_fsspec_filesystem_and_every_source_form(tmp_path):
    samples = [image_sample(i) for i in range(3)]
    write_shards(samples, "memory://bucket/run", max_samples=1)
    keys = [s.key for s in samples]
    for source in (
        "memory://bucket/run/manifest.json",
        "memory://bucket/run/shard-*.tar",
        "memory://bucket/run/shard-{00000..00002}.tar",
        ["memory://bucket/run/shard-00000.tar", "memory://bucket/run/shard-0000[12].tar"],
    ):
        assert [r.key for r in read_samples(source)] == keys, source
    assert [u.rsplit("/", 1)[1] for u in shard_urls("memory://bucket/run/shard-*.tar")] == [
        "shard-00000.tar",
        "shard-00001.tar",
        "shard-00002.tar",
    ]


def test_writer_refuses_bad_samples(tmp_path):
    good = image_sample(0)
    with pytest.raises(ValueError, match="duplicate sample key"):
        write_shards([good, good], str(tmp_path))
    broken = image_sample(1)
    broken.meta["size"] = [24]
    with pytest.raises(SampleError, match="size"):
        write_shards([broken], str(tmp_path))
    with pytest.raises(SampleError, match="unknown objects"):
        build_meta(
            key="k",
            media={"type": "image", "member": "jpg"},
            size=(2, 2),
            expressions=[Expression("0", "x", "referring", ("ghost",))],
            gt={"objects": {}},
            source={"dataset": "d", "split": "s", "original_id": "o"},
        )
    with pytest.raises(SampleError, match="RLE size"):
        build_meta(
            key="k",
            media={"type": "image", "member": "jpg"},
            size=(2, 2),
            expressions=[],
            gt={"objects": {"a": [rle.encode(np.ones((3, 3), bool))]}},
            source={"dataset": "d", "split": "s", "original_id": "o"},
        )
    with pytest.raises(SampleError, match="key"):
        build_meta(
            key="has.dot",
            media={"type": "image", "member": "jpg"},
            size=(2, 2),
            expressions=[],
            gt=None,
            source={"dataset": "d", "split": "s", "original_id": "o"},
        )


def test_bad_samples_become_error_records_and_the_stream_goes_on(tmp_path):
    good = [image_sample(i) for i in range(3)]
    wrong_size = image_sample(10)
    wrong_size.meta["gt"]["objects"]["obj"] = [rle.encode(np.ones((5, 5), bool))]
    header_mismatch = image_sample(11)
    header_mismatch.meta["size"] = [30, 30]
    header_mismatch.meta["gt"]["objects"]["obj"] = [rle.encode(np.ones((30, 30), bool))]
    bomb = image_sample(12, member="png")
    bomb.meta["size"] = [9000, 9000]
    bomb.meta["gt"] = None
    raw_tar(
        tmp_path / "bad.tar",
        [
            members_of(good[0]),
            members_of(image_sample(20), jpg=b"not a jpeg at all"),
            {"broken.json": b"{not json", "broken.jpg": good[0].members["jpg"]},
            members_of(image_sample(21), pyd=b"cos\nsystem\n"),
            members_of(wrong_size),
            members_of(header_mismatch),
            members_of(bomb, png=bomb_png()),
            members_of(good[1]),
        ],
    )
    full = (tmp_path / "bad.tar").read_bytes()
    raw_tar(tmp_path / "good.tar", [members_of(good[2])])
    (tmp_path / "truncated.tar").write_bytes(full[: len(full) // 2 + 100])
    results = list(
        read_samples([str(tmp_path / "bad.tar"), str(tmp_path / "truncated.tar"), str(tmp_path / "good.tar")])
    )
    errors = [r for r in results if isinstance(r, ReadError)]
    stages = [(e.key, e.stage) for e in errors]
    assert stages[:6] == [
        (image_sample(20).key, "image"),
        ("broken", "metadata"),
        (image_sample(21).key, "member"),
        (wrong_size.key, "metadata"),
        (header_mismatch.key, "image"),
        (bomb.key, "image"),
    ]
    assert "over the" in errors[5].message and str(MAX_PIXELS) in errors[5].message
    assert "pickle" in errors[2].message and "RLE size" in errors[3].message
    assert errors[-1].stage == "tar" and errors[-1].shard.endswith("truncated.tar")
    read_keys = [r.key for r in results if isinstance(r, Sample)]
    assert read_keys[:2] == [good[0].key, good[1].key] and read_keys[-1] == good[2].key


def test_missing_media_member_is_an_error(tmp_path):
    sample = video_sample()
    members = members_of(sample)
    del members[f"{sample.key}.00002.jpg"]
    raw_tar(tmp_path / "x.tar", [members])
    (error,) = read_samples(str(tmp_path / "x.tar"))
    assert error.stage == "member" and "00002.jpg" in error.message


def test_fsspec_glob_on_local_paths_is_sorted(tmp_path):
    write_shards([image_sample(i) for i in range(3)], str(tmp_path), max_samples=1)
    urls = shard_urls(str(tmp_path / "shard-*.tar"))
    assert urls == sorted(urls) and len(urls) == 3
    assert fsspec.open(urls[0]).open().read(1)


def test_manifest_lists_keys_and_a_header_scan_finds_the_same(tmp_path):
    samples = [image_sample(i) for i in range(5)] + [video_sample()]
    write_shards(samples, str(tmp_path), max_samples=2)
    from_manifest = shard_keys(str(tmp_path / "manifest.json"))
    scanned = shard_keys(str(tmp_path / "shard-*.tar"))
    assert (
        list(from_manifest.values())
        == list(scanned.values())
        == [
            [samples[0].key, samples[1].key],
            [samples[2].key, samples[3].key],
            [samples[4].key, samples[5].key],
        ]
    )
    assert list(from_manifest) == list(scanned)  # the same URLs, in order


def test_repeated_keys_belong_to_the_first_shard_that_holds_them():
    keys = {"a.tar": ["x", "y"], "b.tar": ["z", "x"], "c.tar": ["y", "x", "w", "w"]}
    assert repeated_keys(keys) == {"a.tar": {}, "b.tar": {"x": "a.tar"}, "c.tar": {"y": "a.tar", "x": "a.tar"}}


def test_a_truncated_tar_names_the_sample_it_lost(tmp_path):
    samples = [image_sample(i) for i in range(3)]
    raw_tar(tmp_path / "full.tar", [members_of(s) for s in samples])
    full = (tmp_path / "full.tar").read_bytes()
    # Cut inside the last sample's image member: the first two are whole.
    header = full.index(f"{samples[2].key}.jpg".encode())  # the member's 512-byte header starts with its name
    (tmp_path / "cut.tar").write_bytes(full[: header + 512 + 100])
    results = list(read_shard(str(tmp_path / "cut.tar")))
    assert [r.key for r in results] == [s.key for s in samples]
    error = results[-1]
    assert isinstance(error, ReadError) and error.stage == "tar"
    assert "truncated or corrupt tar after 2 samples" in error.message and "@" not in error.message
    # The scan gives the keys up to the damage, and does not raise.
    assert shard_keys(str(tmp_path / "cut.tar")) == {str(tmp_path / "cut.tar"): [s.key for s in samples]}


def test_a_key_repeated_within_a_shard_is_read_once(tmp_path):
    first, other = image_sample(0), image_sample(1)
    raw_tar(tmp_path / "x.tar", [members_of(first), members_of(other), members_of(first)])
    results = list(read_shard(str(tmp_path / "x.tar")))
    assert [type(r).__name__ for r in results] == ["Sample", "Sample", "ReadError"]
    assert results[2].key == first.key and results[2].stage == "key" and "repeats" in results[2].message


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_an_expression_without_text_breaks_the_contract(text):
    sample = image_sample(0)
    sample.meta["expressions"][0]["text"] = text
    with pytest.raises(SampleError, match="expressions/0/text"):
        validate(sample.meta)


def test_non_ascii_expressions_round_trip(tmp_path):
    sample = image_sample(0)
    texts = ["der Hund links — größer", "左边的狗", "el perro 🐕 a la izquierda"]
    for expression, text in zip(sample.meta["expressions"], texts, strict=False):
        expression["text"] = text
    write_shards([sample], str(tmp_path))
    (read,) = read_samples(str(tmp_path / "manifest.json"))
    assert [e.text for e in read.expressions] == texts[:2]


def test_the_manifest_counts_frames_and_expressions_per_shard(tmp_path):
    """Counts for plans and scheduling: an image is one frame, a frames video its listed frames, an mp4 the
    frames its fps gives (from the header), each expression once and once per frame in expression_frames."""
    from pipeline.data.fixtures.folder import write_folder
    from pipeline.data.layouts import FORMATS

    samples = [image_sample(i) for i in range(3)] + [video_sample()]
    shards = write_shards(samples, str(tmp_path / "a"), max_samples=3)
    per_sample = [(1, len(s.meta["expressions"])) for s in samples[:3]]
    video = (3, len(samples[3].meta["expressions"]))
    assert [(s.frames, s.expressions, s.expression_frames) for s in shards] == [
        (3, sum(e for _, e in per_sample), sum(e for _, e in per_sample)),
        (3, video[1], 3 * video[1]),
    ]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [s["frames"] for s in manifest["shards"]] == [3, 3]
    corpus = write_folder(str(tmp_path / "corpus"))
    for fps in (2, None):
        written = write_shards(FORMATS["folder"](corpus.corpus, fps=fps, prompts=corpus.prompts_path),
                               str(tmp_path / f"f{fps}"), max_samples=100)  # fmt: skip
        decoded = sum(len(s.frames()) for s in read_samples(str(tmp_path / f"f{fps}")))
        assert written[0].frames == decoded  # the mp4's header estimate equals what decoding gives here
