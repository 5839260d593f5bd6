"""Decoding videos into RGB frames at a chosen rate (PyAV), and encoding frames as JPEG (or mp4, for fixtures).

Sampling rule: with timestamps measured from the first decoded frame, output frame ``k`` is the first
decoded frame (in presentation order) whose timestamp is ``>= k / fps``, for ``k = 0, 1, ...`` while
such a frame exists. So a 10-frame clip at 10 fps gives 10 frames at ``fps=10``, frames 0, 2, 4, 6, 8
at ``fps=5`` and frames 0, 5 at ``fps=2``. Above the source rate a frame repeats (the output stays on
a uniform time grid). Timestamps are compared as exact fractions, so ``k / fps`` never loses a frame
to float rounding.
"""

import io
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

# A float rate such as 29.97 or 30000/1001 -> an exact fraction close to what was meant.
_FPS_DENOMINATOR = 1_000_000
JPEG_QUALITY = 95


def decode_video(data: bytes, fps: float | None) -> list[np.ndarray]:
    """Encoded video bytes (mp4, ...) -> RGB uint8 ``(H, W, 3)`` frames sampled at ``fps`` (module rule).

    Raises:
        ValueError: not a decodable video, no video stream, no frame, or a rate that is not positive.
    """
    return sample_video_frames(io.BytesIO(data), fps, name="<video bytes>")


def sample_video_frames(path_or_file: str | Path | BinaryIO, fps: float | None, *, name: str = "") -> list[np.ndarray]:
    """The frames of a video file or file object sampled at ``fps``; ``None`` keeps every decoded frame.

    Args:
        path_or_file: a local path or a readable binary file object.
        fps: output rate in frames per second (module rule), or None for every frame.
        name: how error messages name the video (default: the path).

    Raises:
        ValueError: as ``decode_video``.
    """
    return list(iter_video_frames(path_or_file, fps, name=name))


def iter_video_frames(
    path_or_file: str | Path | BinaryIO, fps: float | None, *, name: str = ""
) -> Iterator[np.ndarray]:
    """``sample_video_frames`` one frame at a time, so a long video never sits in memory whole."""
    name = name or _name(path_or_file)
    step = _rate(fps, name)
    count = 0
    for time, frame in _decoded(path_or_file, name):
        if step is None:
            count += 1
            yield frame.to_ndarray(format="rgb24")
            continue
        picture = None  # converted once even when the frame fills several slots (repeats are copies)
        while time >= count / step:
            picture = frame.to_ndarray(format="rgb24") if picture is None else picture.copy()
            count += 1
            yield picture
    if not count:
        raise ValueError(f"video {name}: no frame could be decoded")


def native_fps(path_or_file: str | Path | BinaryIO, *, name: str = "") -> float:
    """The average frame rate a video's first video stream declares.

    Raises:
        ValueError: not a video, or the stream declares no rate.
    """
    name = name or _name(path_or_file)
    with _open(path_or_file, name) as container:
        rate = _stream(container, name).average_rate
    if not rate or rate <= 0:
        raise ValueError(f"video {name}: the video stream declares no frame rate")
    return float(rate)


def estimated_frames(data: bytes, fps: float | None) -> int:
    """How many frames decoding ``data`` at ``fps`` gives, from the header alone (duration x fps, or the stream's
    frame count at its own rate): for plans, not for decoding. 0 when the header says nothing."""
    name = "<video bytes>"
    with _open(io.BytesIO(data), name) as container:
        stream = _stream(container, name)
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = 0.0
        native = float(stream.average_rate or 0)
        if fps is None:
            return int(stream.frames) or round(seconds * native)
        return max(1, round(seconds * fps)) if seconds > 0 else 0


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An ``(H, W, 3)`` RGB uint8 frame -> JPEG bytes (deterministic for the same frame and quality)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"a frame must be (height, width, 3) uint8, got {frame.shape} {frame.dtype}")
    out = io.BytesIO()
    Image.fromarray(frame, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def encode_mp4(frames: list[np.ndarray], fps: int) -> bytes:
    """RGB uint8 frames (even height and width) -> an H.264 mp4 at ``fps`` (for fixtures and demos).

    Encoded with one thread and a fixed quality, so the same frames give the same bytes.
    """
    if not frames:
        raise ValueError("an mp4 needs at least one frame")
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs even frame sides, got {height}x{width}")
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10", "threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return out.getvalue()


def _name(path_or_file) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        return str(path_or_file)
    return str(getattr(path_or_file, "name", "<file object>"))


def _rate(fps: float | None, name: str) -> Fraction | None:
    if fps is None:
        return None
    if not fps > 0:
        raise ValueError(f"video {name}: fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(_FPS_DENOMINATOR)


def _open(path_or_file, name: str):
    source = str(path_or_file) if isinstance(path_or_file, Path) else path_or_file
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"video {name}: not a readable video ({type(error).__name__}: {error})") from error


def _stream(container, name: str):
    # FFmpeg opens a lone PNG or JPEG as a one-frame "video" (png_pipe, jpeg_pipe, image2): refuse it.
    if container.format.name.endswith("_pipe") or container.format.name == "image2":
        raise ValueError(f"video {name}: a still image ({container.format.name}), not a video")
    if not container.streams.video:
        raise ValueError(f"video {name}: the file has no video stream")
    return container.streams.video[0]


def _decoded(path_or_file, name: str) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames with their exact timestamps in seconds from the first frame."""
    with _open(path_or_file, name) as container:
        stream = _stream(container, name)
        rate = stream.average_rate or stream.guessed_rate
        first = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and frame.time_base is not None:
                    time = Fraction(frame.pts) * Fraction(frame.time_base)
                elif rate:
                    time = Fraction(index) / Fraction(rate)  # no timestamps: assume a constant rate
                else:
                    raise ValueError(f"video {name}: frame {index} has no timestamp and the stream no rate")
                first = time if first is None else first
                yield time - first, frame
        except av.FFmpegError as error:
            raise ValueError(f"video {name}: decoding failed ({type(error).__name__}: {error})") from error
