"""Video decoding at a chosen rate: which frames come out, in which order, and how bad input fails."""

import io

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.data.video import decode_video, encode_jpeg, encode_mp4, native_fps, sample_video_frames

GREYS = [10 + 24 * i for i in range(10)]  # frame i is a solid grey: its level tells which frame came out


@pytest.fixture(scope="module")
def clip() -> bytes:
    """10 frames at 10 fps, 32x32, frame i a solid grey of level GREYS[i]."""
    return encode_mp4([np.full((32, 32, 3), g, dtype=np.uint8) for g in GREYS], fps=10)


def levels(frames: list[np.ndarray]) -> list[int]:
    """The source frame index of each decoded frame, from its grey level (the codec is near-lossless)."""
    return [int(np.argmin([abs(float(f.mean()) - g) for g in GREYS])) for f in frames]


@pytest.mark.parametrize(
    ("fps", "indices"),
    [
        (10, list(range(10))),
        (5, [0, 2, 4, 6, 8]),
        (2, [0, 5]),
        (3, [0, 4, 7]),  # k/3 s -> first frame at or after 0, 0.333, 0.667 s
        (20, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]),  # above the source rate, frames repeat
        (None, list(range(10))),
    ],
)
def test_sampled_frames_follow_the_rule(clip, fps, indices):
    frames = decode_video(clip, fps)
    assert levels(frames) == indices
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in frames)
    assert len({id(f) for f in frames}) == len(frames)  # a repeated frame is a copy, not the same array
    assert max(abs(float(f.mean()) - GREYS[i]) for f, i in zip(frames, indices, strict=True)) < 3


def test_paths_and_file_objects_decode_alike(clip, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    by_path = sample_video_frames(path, 5)
    by_str = sample_video_frames(str(path), 5)
    with path.open("rb") as f:
        by_file = sample_video_frames(f, 5)
    for frames in (by_str, by_file):
        assert all(np.array_equal(a, b) for a, b in zip(by_path, frames, strict=True))
    assert native_fps(path) == 10.0


def test_encoding_is_deterministic(clip):
    assert encode_mp4([np.full((32, 32, 3), g, dtype=np.uint8) for g in GREYS], fps=10) == clip
    frame = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    data = encode_jpeg(frame)
    assert data == encode_jpeg(frame)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (24, 16) and image.mode == "RGB"


def empty_avi() -> bytes:
    """A container with a video stream and no frame."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    return out.getvalue()


def still_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    return out.getvalue()


def wav() -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a readable video"),
        (b"certainly not a video " * 20, "not a readable video"),
        (still_png(), "a still image"),
        (wav(), "no video stream"),
        (empty_avi(), "no frame could be decoded"),
    ],
)
def test_bad_input_raises_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        decode_video(data, 1.0)


def test_bad_rate_and_bad_frames_raise(clip):
    with pytest.raises(ValueError, match="fps must be positive"):
        decode_video(clip, 0)
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="even frame sides"):
        encode_mp4([np.zeros((5, 6, 3), dtype=np.uint8)], fps=1)
    with pytest.raises(ValueError, match="video broken.mp4: not a readable video"):
        sample_video_frames(io.BytesIO(b"\x00" * 64), 1, name="broken.mp4")
