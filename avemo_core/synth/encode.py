"""Raw frames and samples -> a media file, by a real ffmpeg fed through pipes (never a shell).

Video frames go to ffmpeg's stdin; with both tracks the audio goes through a second pipe (an
inherited file descriptor) written by a helper thread, so neither write can block the other.
Encoders run single-threaded with bit-exact flags and no metadata, so the same input gives the same
bytes. The file appears under its final name only when ffmpeg has finished (written aside, then
renamed).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from avemo_core.synth.config import SynthConfig

CONTAINERS = {".mp4": "mp4", ".m4a": "ipod", ".wav": "wav"}


class EncodeError(RuntimeError):
    """ffmpeg failed or is missing."""


def encode(
    path: Path,
    config: SynthConfig,
    pcm: bytes | None,
    frames: Iterable[np.ndarray] | None,
) -> None:
    """Write `path` (.mp4, .m4a or .wav) from 16-bit mono PCM and/or BGR uint8 frames (H, W, 3)."""
    container = CONTAINERS.get(path.suffix)
    if container is None:
        raise ValueError(f"unsupported media type {path.suffix!r}; use one of {sorted(CONTAINERS)}")
    if pcm is None and frames is None:
        raise ValueError("nothing to encode: need audio samples, video frames or both")
    if frames is not None and container != "mp4":
        raise ValueError(f"{path.suffix} holds no video")
    audio_in = ["-f", "s16le", "-ar", str(config.sample_rate_hz), "-ac", "1"]
    video_in = [
        "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{config.width_px}x{config.height_px}", "-r", str(config.fps),
    ]  # fmt: skip
    video_out = [
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", str(config.video_crf),
        "-pix_fmt", "yuv420p", "-threads:v", "1", "-flags:v", "+bitexact",
    ]  # fmt: skip
    audio_out = (
        ["-c:a", "pcm_s16le"]
        if container == "wav"
        else ["-c:a", "aac", "-b:a", f"{config.audio_bitrate_kbps}k", "-flags:a", "+bitexact"]
    )
    read_fd = write_fd = None
    if frames is not None and pcm is not None:
        read_fd, write_fd = os.pipe()
        inputs = [*video_in, "-i", "pipe:0", *audio_in, "-i", f"pipe:{read_fd}"]
        codecs = ["-map", "0:v", "-map", "1:a", *video_out, *audio_out]
    elif frames is not None:
        inputs, codecs = [*video_in, "-i", "pipe:0"], [*video_out, "-an"]
    else:
        inputs, codecs = [*audio_in, "-i", "pipe:0"], [*audio_out, "-vn"]
    part = path.with_name(f".{path.name}.part")
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs, *codecs,
        "-map_metadata", "-1", "-fflags", "+bitexact", "-f", container, str(part),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=() if read_fd is None else (read_fd,),
        )
    except FileNotFoundError as err:
        if write_fd is not None:
            os.close(write_fd)
        raise EncodeError("ffmpeg not found; install it (e.g. apt-get install ffmpeg)") from err
    finally:
        if read_fd is not None:
            os.close(read_fd)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    feeder = None
    if write_fd is not None:
        feeder = threading.Thread(target=_write_all, args=(write_fd, pcm), daemon=True)
        feeder.start()
    written = False
    try:
        if frames is not None:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        else:
            proc.stdin.write(pcm)
        written = True
    except BrokenPipeError:
        written = True  # ffmpeg stopped early: its exit code and message say why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        if feeder is not None:
            feeder.join()
        code = proc.wait()
        drain.join()
        if not written or code != 0:
            part.unlink(missing_ok=True)
    if code != 0:
        message = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise EncodeError(f"ffmpeg failed on {path.name} (exit {code}): {' | '.join(message[-3:])}")
    os.replace(part, path)


def _write_all(fd: int, data: bytes) -> None:
    """Write data to a pipe and close it; a reader that went away ends the write quietly."""
    with contextlib.suppress(BrokenPipeError), os.fdopen(fd, "wb") as pipe:
        pipe.write(data)
