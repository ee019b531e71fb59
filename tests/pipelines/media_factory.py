"""Test media generated with real ffmpeg (argument lists, never a shell): ordinary and odd valid
files, bad files, and talking-head footage built from a real photograph (scikit-image's astronaut).
Lossless codecs (FFV1 grey video, PCM WAV) where a test compares decoded data exactly."""

from __future__ import annotations

import functools
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ffmpeg(*args: str | Path, stdin: bytes | None = None) -> None:
    subprocess.run([*FFMPEG, *map(str, args)], input=stdin, check=True)


def av_file(
    path: Path,
    duration_s: float = 2.0,
    *,
    size: str = "160x120",
    rate: int = 10,
    audio: bool = True,
    video: bool = True,
    video_codec: tuple[str, ...] = (
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ),
    audio_codec: tuple[str, ...] = ("-c:a", "aac"),
    audio_rate_hz: int = 16000,
    channels: int = 1,
    extra: tuple[str, ...] = (),
) -> Path:
    """testsrc2 video and/or a sine tone; codecs and container chosen by the caller."""
    inputs: list[str] = []
    codecs: list[str] = []
    if video:
        inputs += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration_s}"]
        codecs += list(video_codec)
    if audio:
        layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        source = f"sine=frequency=440:duration={duration_s}:sample_rate={audio_rate_hz}"
        inputs += ["-f", "lavfi", "-i", f"{source},aformat=channel_layouts={layout}"]
        codecs += list(audio_codec)
    ffmpeg(*inputs, *codecs, *extra, "-t", str(duration_s), path)
    return path


def mp4(path: Path, duration_s: float = 2.0, **kwargs: Any) -> Path:
    """H.264 + AAC MP4 with the index at the front (as streaming sites serve it)."""
    return av_file(path, duration_s, extra=("-movflags", "+faststart"), **kwargs)


def wav(path: Path, samples: np.ndarray, rate_hz: int = 16000) -> Path:
    """Lossless mono 16-bit PCM WAV of int16 samples."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(np.asarray(samples, "<i2").tobytes())
    return path


def grey_video(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Lossless FFV1 grey video (MKV) of (T, H, W) uint8 frames, decoded back bit-exactly."""
    count, height, width = frames.shape
    ffmpeg(
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-s",
        f"{width}x{height}",
        "-r",
        str(fps),
        "-i",
        "pipe:",
        "-c:v",
        "ffv1",
        "-pix_fmt",
        "gray",
        path,
        stdin=np.ascontiguousarray(frames, np.uint8).tobytes(),
    )
    return path


def rotated_mp4(path: Path, rotate_deg: int = 90) -> Path:
    """A 160x80 video whose top half is white and bottom half black, tagged to display rotated."""
    frames = np.zeros((10, 80, 160), np.uint8)  # (T, H, W)
    frames[:, :40] = 255
    raw = path.with_suffix(".raw.mkv")
    plain = path.with_suffix(".plain.mp4")
    grey_video(raw, frames, 5)
    ffmpeg("-i", raw, "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", plain)
    # ffmpeg 5.x writes the display matrix from the `rotate` tag only when copying the stream
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={rotate_deg}", path)
    raw.unlink()
    plain.unlink()
    return path


@functools.lru_cache(maxsize=1)
def _head() -> np.ndarray:
    """(150, 150, 3) uint8: the astronaut's head from scikit-image's photograph."""
    from skimage import data, transform

    photo = data.astronaut()  # (512, 512, 3); the face is around rows 20-230, cols 120-330
    head = photo[0:260, 100:360]  # (260, 260, 3)
    return (transform.resize(head, (150, 150), anti_aliasing=True) * 255).astype(np.uint8)


def face_frame(step: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """(H, W, 3) uint8: the astronaut's head on a plain background, moving slightly with `step`."""
    width, height = size
    frame = np.full((height, width, 3), (90, 110, 130), np.uint8)
    dx = int(round(12 * np.sin(step / 7.0)))
    dy = int(round(6 * np.cos(step / 5.0)))
    top, left = (height - 150) // 2 + dy, (width - 150) // 2 + dx
    frame[top : top + 150, left : left + 150] = _head()
    return frame


def talking_head_mp4(
    path: Path, duration_s: float = 4.0, fps: int = 10, sideways: bool = False, audio: bool = True
) -> Path:
    """The astronaut photograph moving slightly over a background, with a tone as its voice.

    sideways: store the frames turned 90 degrees clockwise with a display matrix that turns them
    back upright, as phones record portrait video. audio=False: no audio stream (a silent film).
    """
    count = int(duration_s * fps)
    frames = np.stack([face_frame(i) for i in range(count)])  # (T, H, W, 3)
    if sideways:
        frames = np.ascontiguousarray(np.rot90(frames, k=-1, axes=(1, 2)))  # (T, W, H, 3)
    height, width = frames.shape[1:3]
    target = path.with_suffix(".upright.mp4") if sideways else path
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "pipe:",
        *(["-f", "lavfi", "-i", f"sine=frequency=220:duration={duration_s}:sample_rate=16000",
           "-c:a", "aac", "-shortest"] if audio else []),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", target,
        stdin=frames.tobytes(),
    )  # fmt: skip
    if sideways:
        # this display matrix turns the picture 90 degrees counter-clockwise (see rotated_mp4)
        ffmpeg("-i", target, "-c", "copy", "-metadata:s:v:0", "rotate=90", path)
        target.unlink()
    return path


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    """The first `keep` share of the bytes of a valid file, as an interrupted download leaves it."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """Files named like media that are not media: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    noise = folder / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    good = mp4(folder / ".whole-source.mp4", 4.0)
    cut = truncated(folder / "truncated.mp4", good)
    good.unlink()
    return {"empty": empty, "text": text, "noise": noise, "truncated": cut}


def talking_head_with_audio(path: Path, audio_filter: str, duration_s: float = 2.0) -> Path:
    """A talking-head video (a real face, so its clips keep their visual input) with an audio
    track from a lavfi source, AAC in MP4."""
    fps = 10
    frames = np.stack([face_frame(i) for i in range(int(duration_s * fps))])  # (T, H, W, 3)
    height, width = frames.shape[1:3]
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "pipe:", "-f", "lavfi", "-i", f"{audio_filter}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-t", str(duration_s), path,
        stdin=frames.tobytes(),
    )  # fmt: skip
    return path
