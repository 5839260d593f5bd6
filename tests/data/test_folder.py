"""Folder converter: an unlabeled corpus (local, memory:// or a glob) -> shards -> read back unchanged."""

import io
import json
import logging
import uuid

import fsspec
import numpy as np
import pytest
from PIL import Image

from pipeline.data import read_samples, write_shards
from pipeline.data.fixtures.folder import VIDEO_FPS, VIDEO_GREYS, write_folder
from pipeline.data.layouts import folder
from pipeline.data.video import decode_video, encode_jpeg

VIDEO = "clips/d.mp4"


@pytest.fixture
def corpus(tmp_path):
    return write_folder(tmp_path / "data")


@pytest.fixture
def memory_corpus():
    root = f"memory://folder-test-{uuid.uuid4().hex}"
    yield write_folder(root)
    fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def round_trip(source, out, **options):
    write_shards(folder.convert(source, **options), str(out), prefix="folder")
    samples = list(read_samples(str(out / "manifest.json")))
    assert all(hasattr(s, "frames") for s in samples), samples  # no ReadError
    return {s.meta["source"]["original_id"]: s for s in samples}, [s.meta["source"]["original_id"] for s in samples]


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_images_are_copied_and_videos_sampled_to_jpeg_frames(corpus, tmp_path):
    samples, order = round_trip(corpus.corpus, tmp_path / "shards", fps=2, prompts=corpus.prompts_path)
    assert order == corpus.original_ids == ["c.png", "clips/d.mp4", "photos/a.jpg", "photos/b.jpeg"]
    for sample in samples.values():
        assert sample.meta["gt"] is None and sample.meta["source"]["dataset"] == "folder"
        assert sample.meta["source"]["split"] == "unlabeled"
        assert [(e.id, e.text, e.kind, e.object_ids) for e in sample.expressions] == [
            ("0", corpus.prompts[0], "referring", ()),
            ("1", corpus.prompts[1], "referring", ()),
        ]
        assert sample.target(sample.expressions[0]) is None
    for relative, data in corpus.images.items():
        media = samples[relative].meta["media"]
        assert media == {"type": "image", "member": "png" if relative.endswith("png") else "jpg"}
        assert samples[relative].members[media["member"]] == data  # byte-identical, not re-encoded
        (frame,) = samples[relative].frames()
        assert np.array_equal(frame, decoded(data))
    video = samples[VIDEO]
    assert video.meta["media"]["type"] == "frames" and video.frame_names == ["00000", "00001"]
    assert video.meta["size"] == [32, 32] and video.meta["source"]["ids"] == {"fps": 2, "frames": 2}
    # fps 2 of a 4 fps clip: frames 0 and 2, stored as the deterministic JPEG of the decoded frames
    expected = [encode_jpeg(f) for f in decode_video(corpus.videos[VIDEO], 2)]
    assert [video.members[m] for m in video.meta["media"]["members"]] == expected
    originals = corpus.video_frames[VIDEO]
    for frame, index in zip(video.frames(), (0, 2), strict=True):
        assert np.abs(frame.astype(int) - originals[index]).mean() < 4
        assert abs(float(frame[20:, :].mean()) - VIDEO_GREYS[index]) < 3


def test_keep_mp4_stores_the_video_itself(corpus, tmp_path):
    samples, _ = round_trip(corpus.corpus, tmp_path / "native", keep_mp4=True)
    video = samples[VIDEO]
    assert video.meta["media"] == {"type": "video", "member": "mp4", "fps": float(VIDEO_FPS)}
    assert video.members["mp4"] == corpus.videos[VIDEO] and video.expressions == []
    assert len(video.frames()) == 4
    samples, _ = round_trip(corpus.corpus, tmp_path / "two", keep_mp4=True, fps=2)
    assert samples[VIDEO].meta["media"]["fps"] == 2 and len(samples[VIDEO].frames()) == 2


def test_every_frame_without_fps_and_other_names(corpus, tmp_path):
    samples, _ = round_trip(corpus.corpus, tmp_path / "shards", dataset="my-photos", split="batch-1")
    assert len(samples[VIDEO].frames()) == len(VIDEO_GREYS)
    assert {s.meta["source"]["dataset"] for s in samples.values()} == {"my-photos"}
    assert {s.meta["source"]["split"] for s in samples.values()} == {"batch-1"}
    assert all(s.expressions == [] for s in samples.values())


def test_memory_filesystem_and_globs_give_the_same_shards(corpus, memory_corpus, tmp_path):
    assert memory_corpus.corpus.startswith("memory://")
    manifests = {}
    for name, source in [("local", corpus.corpus), ("memory", memory_corpus.corpus)]:
        write_shards(folder.convert(source, fps=2, prompts=memory_corpus.prompts_path), str(tmp_path / name))
        manifests[name] = json.loads((tmp_path / name / "manifest.json").read_text())["shards"]
    assert manifests["local"] == manifests["memory"]  # same relative paths and bytes -> byte-identical shards
    # a glob's ids are relative to its fixed prefix
    globs = {
        f"{memory_corpus.corpus}/photos/*": ["a.jpg", "b.jpeg"],
        f"{corpus.corpus}/**/*.jp*g": ["photos/a.jpg", "photos/b.jpeg"],
    }
    for source, ids in globs.items():
        assert [s.meta["source"]["original_id"] for s in folder.convert(source)] == ids
    (single,) = folder.convert(f"{memory_corpus.corpus}/c.png")
    assert single.meta["source"]["original_id"] == "c.png"


def test_rerun_gives_byte_identical_shards(corpus, tmp_path):
    for name in ("a", "b"):
        write_shards(folder.convert(corpus.corpus, fps=2, prompts=corpus.prompts_path), str(tmp_path / name))
    manifests = [json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b")]
    assert [s["sha256"] for s in manifests[0]["shards"]] == [s["sha256"] for s in manifests[1]["shards"]]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("photos/broken.jpg", b"\xff\xd8\xff\xe0 truncated", "photos/broken.jpg: not a decodable image"),
        ("clips/broken.mp4", b"\x00\x00\x00\x18ftypmp42 but nothing else", "clips/broken.mp4: not a readable video"),
        ("gif.png", None, "gif.png: a GIF image"),
    ],
)
def test_bad_files_raise_or_are_skipped(corpus, caplog, name, data, message):
    if data is None:
        out = io.BytesIO()
        Image.new("P", (4, 4)).save(out, format="GIF")
        data = out.getvalue()
    fs, base = fsspec.core.url_to_fs(corpus.corpus)
    fs.pipe_file(f"{base}/{name}", data)
    with pytest.raises(ValueError, match=message):
        list(folder.convert(corpus.corpus))
    with caplog.at_level(logging.WARNING, logger=folder.__name__):
        kept = [s.meta["source"]["original_id"] for s in folder.convert(corpus.corpus, skip_bad=True)]
    assert kept == corpus.original_ids and f"skipping {name}" in caplog.text


def test_truncated_image_is_caught(corpus):
    fs, base = fsspec.core.url_to_fs(corpus.corpus)
    fs.pipe_file(f"{base}/photos/a.jpg", corpus.images["photos/a.jpg"][:-200])
    with pytest.raises(ValueError, match="photos/a.jpg: not a decodable image"):
        list(folder.convert(corpus.corpus))


def test_bad_options_and_inputs_raise(corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing")
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    cases = [
        (lambda: folder.convert(tmp_path / "empty"), "no image"),
        (lambda: folder.convert(tmp_path / "missing"), "no such folder"),
        (lambda: folder.convert(corpus.corpus, prompts=tmp_path / "blank.txt"), "has no prompt"),
        (lambda: folder.convert(corpus.corpus, prompts=tmp_path / "latin1.txt"), "not readable as UTF-8"),
        (lambda: folder.convert(corpus.corpus, prompts=tmp_path / "nope.txt"), "prompts file not readable"),
        (lambda: folder.convert(corpus.corpus, fps=0), "fps must be positive"),
        (lambda: folder.convert(corpus.corpus, dataset="", skip_bad=True), "must be non-empty"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            list(make())
