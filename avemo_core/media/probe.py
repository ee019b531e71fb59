"""What a media file holds: streams, duration, display size and rotation.

`probe` reads the file in-process with PyAV (`avemo_core.media.inprocess`), which costs a few
milliseconds instead of an ffprobe process (~0.1 CPU-s of library loading). One rule for the
fallback: a file PyAV cannot open, or whose streams its FFmpeg build has no decoder for, is probed
by ffprobe instead and then decoded by the ffmpeg CLI (`MediaInfo.backend` says which); ffprobe
then gives the verdict on a file that is not media at all.

ffprobe runs as an argument list (never a shell) on a `file:` URL, so names with spaces, a leading
dash, `$(...)` or a `scheme:` prefix are read as plain paths, and only the file protocol is allowed
(a text file crafted as a playlist cannot make ffmpeg fetch URLs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from avemo_core.media.errors import MediaError

FFPROBE = os.environ.get("AVEMO_FFPROBE", "ffprobe")
PROBE_TIMEOUT_S = 120.0  # a file ffprobe cannot read within this is treated as unreadable
# Demuxers that read other files or URLs named inside the input: never followed.
REFUSED_FORMATS = frozenset({"hls", "concat", "dash", "image2", "lavfi", "ffmetadata", "tee"})


@dataclasses.dataclass(frozen=True)
class AudioStream:
    codec: str  # ffprobe codec_name, e.g. "aac"
    sample_rate_hz: int  # the stream's own rate (decoding resamples)
    channels: int  # channel count before the mono downmix
    duration_s: float | None  # stream duration when the container states it


@dataclasses.dataclass(frozen=True)
class VideoStream:
    codec: str  # ffprobe codec_name, e.g. "h264"
    width_px: int  # displayed width: after rotation and sample aspect ratio
    height_px: int  # displayed height: after rotation and sample aspect ratio
    rotation_deg: int  # clockwise rotation the player applies (0, 90, 180, 270)
    fps: float | None  # average frame rate when known
    duration_s: float | None  # stream duration when the container states it


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    format_name: str  # ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float  # the longest known duration: container, else streams
    audio: AudioStream | None  # first audio stream; None when the file has none
    video: VideoStream | None  # first real video stream (cover art excluded); None when none
    backend: str = "ffmpeg"  # who decodes it: "pyav" (in-process) or "ffmpeg" (the CLI)


def ffmpeg_url(path: str) -> str:
    """`file:` URL of a local path: ffmpeg then never reads the name as an option or protocol."""
    return "file:" + os.path.abspath(path)


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out >= 0.0 else None  # drop NaN and negatives


def parse_clock_s(value: Any) -> float | None:
    """Seconds of an "HH:MM:SS.fraction" time, as Matroska's per-stream DURATION tag has it."""
    hours_text, _, rest = str(value).partition(":")
    minutes_text, _, seconds_text = rest.partition(":")
    hours, minutes, seconds = _float(hours_text), _float(minutes_text), _float(seconds_text)
    if hours is None or minutes is None or seconds is None:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _stream_duration_s(stream: dict[str, Any]) -> float | None:
    """The stream's own length: its duration, else its DURATION tag (Matroska and WebM state no
    per-stream duration, but ffmpeg and mkvmerge write the tag). Without either, a stream is
    judged against the container's length, the longest stream's, so an audio track that simply
    ends before the picture would read as truncated."""
    duration = _float(stream.get("duration"))
    if duration is not None:
        return duration
    tags = {str(k).upper(): v for k, v in (stream.get("tags") or {}).items()}
    return parse_clock_s(tags["DURATION"]) if "DURATION" in tags else None


def _fraction(value: str | None) -> Fraction | None:
    if not value or value in ("0/0", "0:1", "N/A"):
        return None
    try:
        out = Fraction(value.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return None
    return out if out > 0 else None


def _rotation_deg(stream: dict[str, Any]) -> int:
    """Clockwise display rotation: the display matrix (counter-clockwise degrees) or the old tag."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(-float(side["rotation"])) % 360
    tag = stream.get("tags", {}).get("rotate")
    return round(float(tag)) % 360 if tag else 0


def _video_stream(stream: dict[str, Any]) -> VideoStream | None:
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        return None
    sar = _fraction(stream.get("sample_aspect_ratio")) or Fraction(1)
    display_w = max(1, round(width * sar))
    rotation = _rotation_deg(stream)
    if rotation % 180 == 90:
        display_w, height = height, display_w
    rate = _fraction(stream.get("avg_frame_rate")) or _fraction(stream.get("r_frame_rate"))
    return VideoStream(
        codec=str(stream.get("codec_name", "unknown")),
        width_px=display_w,
        height_px=height,
        rotation_deg=rotation,
        fps=float(rate) if rate else None,
        duration_s=_stream_duration_s(stream),
    )


def _audio_stream(stream: dict[str, Any]) -> AudioStream | None:
    rate = int(_float(stream.get("sample_rate")) or 0)
    channels = int(stream.get("channels") or 0)
    if rate <= 0 or channels <= 0:
        return None
    return AudioStream(
        codec=str(stream.get("codec_name", "unknown")),
        sample_rate_hz=rate,
        channels=channels,
        duration_s=_stream_duration_s(stream),
    )


def parse_probe(
    data: dict[str, Any], measure_duration: Callable[[], float | None] = lambda: None
) -> MediaInfo:
    """MediaInfo from ffprobe's JSON; raises MediaError (stage probe) when nothing is decodable.

    `measure_duration` is asked only when neither the container nor a stream states a duration.
    """
    fmt = data.get("format", {})
    format_name = str(fmt.get("format_name", ""))
    if set(format_name.split(",")) & REFUSED_FORMATS:
        raise MediaError("probe", "unsupported_format", f"container {format_name!r} is not media")
    audio: AudioStream | None = None
    video: VideoStream | None = None
    for stream in data.get("streams", []):
        kind = stream.get("codec_type")
        if kind == "audio" and audio is None:
            audio = _audio_stream(stream)
        elif (
            kind == "video"
            and video is None
            and not stream.get("disposition", {}).get("attached_pic")
        ):
            video = _video_stream(stream)
    if audio is None and video is None:
        raise MediaError(
            "probe", "no_streams", f"no audio or video stream in {format_name or 'file'}"
        )
    durations = [_float(fmt.get("duration"))]
    durations += [s.duration_s for s in (audio, video) if s is not None]
    known = [d for d in durations if d]
    if not known and (measured := measure_duration()):
        known = [measured]
    if not known:
        raise MediaError(
            "probe", "unknown_duration", "neither the container nor a stream states a duration"
        )
    return MediaInfo(format_name=format_name, duration_s=max(known), audio=audio, video=video)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _ffprobe(path: str, *args: str) -> subprocess.CompletedProcess:
    """ffprobe on a local file as an argument list, file protocol only; raises TimeoutExpired."""
    cmd = [FFPROBE, "-v", "error", "-protocol_whitelist", "file", *args, ffmpeg_url(path)]
    return subprocess.run(
        cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
    )


def probe(path: str, in_process: bool = True) -> MediaInfo:
    """Probe a local media file (in-process unless told otherwise, ffprobe as the fallback);
    raises MediaError with a specific reason when it is not media."""
    if not os.path.exists(path):
        raise MediaError("read", "not_found", f"no such file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError("probe", "empty_file", "file is empty (0 bytes)")
    if in_process:
        # here, not at the top: inprocess builds on this module's MediaInfo and parse_probe
        from avemo_core.media.inprocess import InProcessUnsupported, probe_inprocess

        try:
            return probe_inprocess(path)
        except InProcessUnsupported:
            pass  # ffprobe below: it reads what it can, or says why not
    return probe_ffprobe(path)


def probe_ffprobe(path: str) -> MediaInfo:
    """Probe a local media file with an ffprobe process (the CLI path)."""
    try:
        done = _ffprobe(path, "-print_format", "json", "-show_format", "-show_streams")
    except subprocess.TimeoutExpired:
        raise MediaError("probe", "timeout", f"ffprobe took over {PROBE_TIMEOUT_S:.0f} s") from None
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise MediaError("probe", "invalid_media", f"ffprobe: {_last_line(stderr)}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as err:
        raise MediaError("probe", "invalid_media", f"ffprobe printed no JSON: {err}") from None
    return parse_probe(data, lambda: packet_duration_s(path))


def packet_duration_s(path: str) -> float | None:
    """Duration from the packet timestamps (read, not decoded): for raw streams and live
    recordings whose headers state none. None when the packets carry no timing either."""
    entries = "packet=stream_index,pts_time,duration_time"
    try:
        done = _ffprobe(path, "-show_entries", entries, "-of", "compact=p=0")
    except subprocess.TimeoutExpired:
        return None
    ends: dict[str, float] = {}
    totals: dict[str, float] = {}
    for line in done.stdout.decode(errors="replace").splitlines():
        fields = dict(item.split("=", 1) for item in line.split("|") if "=" in item)
        stream = fields.get("stream_index", "")
        length = _float(fields.get("duration_time")) or 0.0
        totals[stream] = totals.get(stream, 0.0) + length
        start = _float(fields.get("pts_time"))
        end = start + length if start is not None else totals[stream]  # no pts: packets in order
        ends[stream] = max(ends.get(stream, 0.0), end)
    longest = max(ends.values(), default=0.0)
    return longest or None
