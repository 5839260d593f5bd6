"""Shard writer and reader: round trips, determinism, bounds, any fsspec filesystem, bad input as error rows."""

import io
import json
import tarfile

import fsspec
import numpy as np
import pytest
from PIL import Image

from pipeline.data import (
    Expression,
    ReadError,
    Sample,
    ShardSample,
    build_meta,
    make_key,
    read_samples,
    rle,
    write_shards,
)
from pipeline.data.reader import MAX_PIXELS, shard_urls
from pipeline.data.sample import SampleError, frame_member


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def image_sample(i: int, size=(24, 32), member="jpg") -> ShardSample:
    rng = np.random.default_rng(i)
    mask = rng.random(size) > 0.5
    key = make_key("synthetic", "val", f"image{i}.jpg")
    meta = build_meta(
        key=key,
        media={"type": "image", "member": member},
        size=size,
        expressions=[
            Expression(f"{i}-0", f"thing {i}", "referring", ("obj",)),
            Expression(f"{i}-1", "none", "no-target"),
        ],
        gt={"objects": {"obj": [rle.encode(mask)]}, "ignore": None},
        source={"dataset": "synthetic", "split": "val", "original_id": f"image{i}.jpg"},
    )
    return ShardSample(key, meta, {member: jpeg((rng.random((*size, 3)) * 255).astype(np.uint8))})


def video_sample(frames=3, size=(16, 20)) -> ShardSample:
    key = make_key("synthetic", "val", "UVO/all/-video.1")
    masks = [np.eye(*size, k=t, dtype=bool) for t in range(frames)]
    meta = build_meta(
        key=key,
        media={
            "type": "frames",
            "members": [frame_member(t, "jpg") for t in range(frames)],
            "frame_names": [f"{5 * t:05d}" for t in range(frames)],
        },
        size=size,
        expressions=[Expression("0", "the diagonal", "reasoning", ("7",))],
        gt={"objects": {"7": [rle.encode(m) if t != 1 else None for t, m in enumerate(masks)]}},
        source={"dataset": "synthetic", "split": "val", "original_id": "UVO/all/-video.1"},
    )
    members = {frame_member(t, "jpg"): jpeg(np.full((*size, 3), 40 * t, np.uint8)) for t in range(frames)}
    return ShardSample(key, meta, members)


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


def raw_tar(path, samples: list[dict]) -> None:
    """Write raw members (name -> bytes) with tarfile, bypassing the writer's checks."""
    with tarfile.open(path, "w") as tar:
        for members in samples:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def members_of(sample: ShardSample, **overrides) -> dict:
    out = {f"{sample.key}.json": json.dumps(sample.meta).encode()}
    out |= {f"{sample.key}.{ext}": data for ext, data in sample.members.items()}
    return out | {f"{sample.key}.{k}": v for k, v in overrides.items()}


def bomb_png() -> bytes:
    """A small PNG whose header declares 9000 x 9000 pixels: over our bound, under PIL's own warning."""
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")
    return buffer.getvalue()


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
