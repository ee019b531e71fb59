"""Probing and decoding inside the Python process with PyAV (FFmpeg's libraries in its wheel).

Why: for short files the processes cost more than the decoding. On a 3.5 s RAVDESS FLAC an
ffprobe and an ffmpeg process took about 0.2-0.3 CPU-s per file (library loading, twice); opening
the file here, probing and decoding it to 16 kHz mono takes 4-5 ms of CPU (numbers: docs and
bench/extract.py). On long video the decoding itself dominates and is the same libavcodec work.

Safety, as with the CLI: the file is opened by Python (`open(path, "rb")`) and FFmpeg reads it
through that file object, so the name is never parsed as a URL, protocol or option; every nested
resource a demuxer asks for (a playlist's segments, a concat list's files) is refused by the
`io_open` callback before anything is read; the demuxers of `REFUSED_FORMATS` are refused by
`parse_probe` exactly as for ffprobe.

The frames the decoder hands out are sampled in Python: sampled frame k (at k / fps seconds
from the run's start) is the last decoded frame starting before (k + 0.5) / fps, the frame
ffmpeg's `fps` filter picks (it rounds timestamps to the nearest output tick); only sampled
frames are scaled and converted (swscale, inside `VideoFrame.reformat`), the others are dropped
as decoded. A frame no sampled time can pick is not even decoded where no other frame depends on
it (`skip_frame`, for the codecs of `SKIPPABLE_CODECS`): the B-frames of most camera, phone and
broadcast H.264 and HEVC (bench/extract.py measures it). The audio goes through FFmpeg's
resampler (swresample, as the CLI uses) to mono float32 at the target rate.
"""

from __future__ import annotations

import math
import os
import stat
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO

import av
import av.error
import numpy as np

from avemo_core.media.errors import MediaError
from avemo_core.media.probe import MediaInfo, parse_probe

_BUFFER_BYTES = 1 << 20  # bytes FFmpeg reads from the Python file object per call
_EPS = 1e-6
# swscale flags by the names DecodeConfig.scale_flags uses (ffmpeg's `flags=` names)
INTERPOLATION = {
    "area": "AREA",
    "bilinear": "BILINEAR",
    "fast_bilinear": "FAST_BILINEAR",
    "bicubic": "BICUBIC",
    "neighbor": "POINT",
}


# Decoders that honour `skip_frame = NONREF` by dropping exactly the frames no other frame refers
# to (B-frames or non-reference pictures); any other codec decodes every frame.
SKIPPABLE_CODECS = frozenset({"h264", "hevc", "mpeg2video", "mpeg4"})
# Video packets demuxed ahead of the decoder, so that the frame presented after each one is known
# (more than any decoder's reordering delay: 16 frames for H.264), and at most this many times as
# many packets of all streams (a file whose video ends long before its audio).
_LOOKAHEAD_PACKETS = 32
_MAX_AHEAD_FACTOR = 8


class InProcessUnsupported(Exception):
    """PyAV cannot open or decode this file; the ffmpeg CLI gets it instead (and the verdict)."""


def is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _refuse_nested(url: str, flags: int, options: dict[str, Any]) -> None:
    raise PermissionError(f"nested resource {url!r} refused: only the file itself is read")


def open_container(path: str) -> tuple[Any, BinaryIO]:
    """(PyAV input container, the file object it reads); raises InProcessUnsupported, also for
    anything but a regular file (a FIFO could block this process; the CLI has a watchdog)."""
    if not is_regular_file(path):
        raise InProcessUnsupported(f"not a regular file: {path}")
    handle = open(path, "rb")  # noqa: SIM115 (closed by the caller, with the container)
    try:
        container = av.open(
            handle, "r", buffer_size=_BUFFER_BYTES, io_open=_refuse_nested, metadata_errors="ignore"
        )
    except (av.error.FFmpegError, PermissionError, OSError, ValueError) as err:
        handle.close()
        raise InProcessUnsupported(f"{type(err).__name__}: {err}") from err
    return container, handle


def _seconds(value: int | None, time_base: Any) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _first_rotation(container: Any, stream: Any) -> float:
    """The display-matrix rotation (counter-clockwise degrees) of the first decoded frame."""
    for frame in container.decode(stream):
        return float(frame.rotation)
    return 0.0


def _stream_record(container: Any, stream: Any) -> dict[str, Any] | None:
    """One stream in ffprobe's JSON shape, so `parse_probe` judges both probes alike."""
    context = stream.codec_context
    if context is None:
        raise InProcessUnsupported(f"no decoder for stream {stream.index} in this FFmpeg build")
    record: dict[str, Any] = {
        "codec_type": stream.type,
        "codec_name": context.name,
        "duration": _seconds(stream.duration, stream.time_base),
        "disposition": {"attached_pic": int(bool(stream.disposition & 1024))},
        "tags": dict(stream.metadata),
    }
    if stream.type == "audio":
        record |= {"sample_rate": context.sample_rate, "channels": context.channels}
    elif stream.type == "video":
        rates = (stream.average_rate, stream.base_rate)
        record |= {
            "width": context.width,
            "height": context.height,
            "sample_aspect_ratio": str(stream.sample_aspect_ratio or "1/1"),
            "avg_frame_rate": str(rates[0] or "0/0"),
            "r_frame_rate": str(rates[1] or "0/0"),
        }
        if not record["disposition"]["attached_pic"]:
            record["side_data_list"] = [{"rotation": _first_rotation(container, stream)}]
    else:
        return None
    return record


def _packet_duration_s(path: str) -> float | None:
    """Duration from the packet timestamps (demuxed, not decoded), for raw streams."""
    container, handle = open_container(path)
    ends: dict[int, float] = {}
    totals: dict[int, float] = {}
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue
            tb = packet.time_base
            index = packet.stream.index
            length = _seconds(packet.duration, tb) or 0.0
            totals[index] = totals.get(index, 0.0) + length
            start = _seconds(packet.pts, tb)
            end = start + length if start is not None else totals[index]
            ends[index] = max(ends.get(index, 0.0), end)
    except av.error.FFmpegError:
        pass  # a damaged tail: the packets up to it still time the file
    finally:
        container.close()
        handle.close()
    return max(ends.values(), default=0.0) or None


def probe_inprocess(path: str) -> MediaInfo:
    """Probe a local file in-process; InProcessUnsupported when PyAV cannot read it, MediaError
    when it reads but holds nothing decodable (the same verdicts as ffprobe's)."""
    container, handle = open_container(path)
    try:
        streams = []
        seen: set[str] = set()
        for stream in container.streams:
            if stream.type in seen and stream.type != "video":
                continue  # parse_probe takes the first audio stream; videos skip cover art
            record = _stream_record(container, stream)
            if record is not None:
                streams.append(record)
                if not (stream.type == "video" and record["disposition"]["attached_pic"]):
                    seen.add(stream.type)
            if {"audio", "video"} <= seen:
                break
        duration = container.duration
        data = {
            "format": {
                "format_name": container.format.name,
                "duration": duration / 1e6 if duration is not None else None,
            },
            "streams": streams,
        }
    except av.error.FFmpegError as err:
        raise InProcessUnsupported(f"{type(err).__name__}: {err}") from err
    finally:
        container.close()
        handle.close()
    info = parse_probe(data, lambda: _packet_duration_s(path))
    return MediaInfo(info.format_name, info.duration_s, info.audio, info.video, backend="pyav")


def _chosen_streams(container: Any) -> tuple[Any | None, Any | None]:
    """The streams the probe described: first audio, first video that is not cover art."""
    audio = next(iter(container.streams.audio), None)
    video = next((s for s in container.streams.video if not s.disposition & 1024), None)
    return audio, video


class PyAvRun:
    """One pass over [start_s, start_s + duration_s) of a file, in-process, with the interface of
    the ffmpeg pipes `SpanDecoder` reads: `read(name, nbytes)` gives raw little-endian float32
    samples ("audio") or raw frames ("video"), `eof[name]` once a stream is fully read.

    Packets are demuxed and decoded only as far as a read needs, so memory holds what the reader
    has not taken yet (plus what the other stream decoded meanwhile, a few blocks at most).
    A damaged packet is skipped, as the CLI does; a read error of the container ends every
    stream and `exit_code()` turns non-zero, with the message in `error_tail()`.
    """

    def __init__(
        self,
        path: str,
        names: list[str],
        start_s: float,
        duration_s: float,
        rate_hz: int,
        fps: float,
        size: tuple[int, int] | None,
        rotation_deg: int,
        pixel_format: str,
        scale_flags: str,
        threads: int,
    ) -> None:
        self._container, self._handle = open_container(path)
        audio, video = _chosen_streams(self._container)
        self._streams = {"audio": audio, "video": video}
        self._names = [n for n in names if self._streams[n] is not None]
        for name in self._names:
            context = self._streams[name].codec_context
            context.thread_count = threads
            if threads != 1 and name == "video":
                context.thread_type = "AUTO"
        self.eof = dict.fromkeys(names, False)
        self._pending = {name: bytearray() for name in names}
        self._ended = {name: name not in self._names for name in names}
        self._error: str | None = None
        start_time = self._container.start_time
        self._origin_s = start_time / 1e6 if start_time is not None else 0.0
        self._start_s = start_s
        self._end_s = start_s + duration_s
        if start_s > 0:
            self._seek_to_keyframe(start_s)
        self._packets: Iterator[Any] = self._container.demux(
            [self._streams[n] for n in self._names]
        )
        # Seconds per timestamp tick of each stream, as floats: decoded frames carry their
        # stream's time base, and PyAV's `frame.time` builds Fractions for every frame (about
        # 5 % of the Python time on a long file).
        self._tick_s = {n: float(self._streams[n].time_base or 0) for n in self._names}
        # audio: resampled to mono float32, trimmed to the run
        self._rate_hz = rate_hz
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
        self._samples_wanted = round(duration_s * rate_hz)
        self._samples_out = 0
        self._lead_samples: int | None = None  # samples before start_s still to drop
        # video: sampled frame k is at start_s + k / fps
        self._fps = fps
        self._size = size
        self._rotation_deg = rotation_deg
        self._pixel_format = pixel_format
        self._interpolation = INTERPOLATION[scale_flags]
        self._frames_wanted = math.ceil(duration_s * fps - _EPS)
        self._default_step_s = self._stream_frame_step_s()
        self._next_frame = 0
        self._on_screen: Any = None  # the last decoded frame starting at or before the next time
        self._on_screen_begin_s = -math.inf
        self._on_screen_end_s = -math.inf
        video_stream = self._streams["video"]
        self._may_skip = (
            "video" in self._names and video_stream.codec_context.name in SKIPPABLE_CODECS
        )
        self._skipping = False  # the video decoder's skip_frame is NONREF now
        self._ahead: deque[Any] = deque()  # packets demuxed, not decoded yet
        self._video_pts_ahead: deque[int | None] = deque()  # of them, the video packets' pts
        self._demux_end: str | None = None  # set when demuxing ended: "" cleanly, else why not
        self._recent_pts: deque[int] = deque(maxlen=_LOOKAHEAD_PACKETS)  # video packets decoded
        self.frames_decoded = 0  # video frames the decoder handed out (skipped ones are not)

    def _seek_to_keyframe(self, start_s: float) -> None:
        """Seek to `start_s` so that the video's first packet is a keyframe at or before it.

        Demuxers that seek by searching timestamps (MPEG-TS, MPEG-PS) land on whatever packet
        comes before the target, and H.264 decoded from a packet that is not a keyframe gives
        no frame until the next one, seconds or a whole file away: such a seek goes back
        further, twice as far each time, down to the file's start."""
        video = self._streams["video"] if "video" in self._names else None
        back_s = 0.0
        while True:
            target_s = start_s - back_s
            # the file's start is timestamp 0 (a search for the origin itself may land after it)
            timestamp = round((self._origin_s + target_s) * 1e6) if target_s > 0 else 0
            self._container.seek(timestamp, backward=True)
            if video is None or target_s <= 0:
                return
            first = next(self._container.demux(video), None)
            if first is None or first.is_keyframe:
                self._container.seek(timestamp, backward=True)
                return
            back_s = max(1.0, 2.0 * back_s)

    # -- the reader's side ---------------------------------------------------------------------
    def read(self, name: str, nbytes: int) -> bytes:
        """Up to nbytes of stream `name`; fewer only at its end."""
        pending = self._pending[name]
        while len(pending) < nbytes and not self._ended[name]:
            self._pump()
        data = bytes(pending[:nbytes])
        del pending[:nbytes]
        if self._ended[name] and not pending:
            self.eof[name] = True
        return data

    def exit_code(self) -> int:
        return 1 if self._error is not None else 0

    def error_tail(self) -> str:
        return self._error or "no message from FFmpeg"

    def finish(self) -> None:
        """Raise MediaError (decode) if reading the container failed."""
        if self._error is not None:
            raise MediaError("decode", "ffmpeg_failed", f"FFmpeg (in-process): {self._error}")

    def close(self) -> None:
        self._container.close()
        self._handle.close()

    # -- decoding ------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Demux one packet and decode it into its stream's pending bytes."""
        packet = self._next_packet()
        if packet is None:
            self._end_all()
            return
        name = packet.stream.type
        if name not in self._streams or self._ended.get(name, True):
            return
        if name == "video" and self._may_skip:
            self._skip_unless_sampled(packet)
        try:
            frames = packet.decode()  # an empty packet flushes the decoder at the end
        except av.error.FFmpegError:
            return  # a damaged packet: skipped, as ffmpeg does, and decoding goes on
        for frame in frames:
            if name == "audio":
                self._audio(frame)
            else:
                self._video(frame)

    def _next_packet(self) -> Any | None:
        """The next packet in file order, None at the end (`_error` set if demuxing failed).
        Where frames may be skipped, video packets are read `_LOOKAHEAD_PACKETS` ahead."""
        wanted = _LOOKAHEAD_PACKETS if self._may_skip else 0
        while self._demux_end is None and (
            not self._ahead
            or (
                len(self._video_pts_ahead) < wanted
                and len(self._ahead) < _MAX_AHEAD_FACTOR * wanted
            )
        ):
            try:
                packet = next(self._packets)
            except (StopIteration, av.error.EOFError):
                self._demux_end = ""
                break
            except av.error.FFmpegError as err:
                self._demux_end = f"{type(err).__name__}: {err}"
                break
            self._ahead.append(packet)
            if packet.stream.type == "video":
                self._video_pts_ahead.append(packet.pts)
        if not self._ahead:
            self._error = self._demux_end or self._error
            return None
        packet = self._ahead.popleft()
        if packet.stream.type == "video":
            self._video_pts_ahead.popleft()
        return packet

    def _skip_unless_sampled(self, packet: Any) -> None:
        """Let the decoder drop this packet's frame (if no other frame refers to it) when no
        sampled time can pick it: none falls between its start and the next frame's (known from
        the packets around it). A packet without a timestamp, or whose successor is not among
        them (the last), is decoded."""
        tick = self._tick_s["video"]
        wanted = True
        # only once a decoded frame has shown the video progressive (`_video`)
        if packet.pts is not None and tick and packet.size and self.frames_decoded:
            around = (*self._video_pts_ahead, *self._recent_pts)
            later = [pts for pts in around if pts is not None and pts > packet.pts]
            if later:
                begin_s = packet.pts * tick - self._origin_s
                next_s = min(later) * tick - self._origin_s
                margin_s = 0.25 * (next_s - begin_s)  # timestamps not exactly regular
                first = math.ceil((begin_s - margin_s - self._start_s) * self._fps - 0.5 - _EPS)
                first = max(first, self._next_frame)  # the samples before it are out already
                # the frame reaching the run's end is decoded too: it ends the run
                wanted = next_s + margin_s >= self._end_s or (
                    first < self._frames_wanted and self._sample_point(first) < next_s + margin_s
                )
        if packet.pts is not None:
            self._recent_pts.append(packet.pts)
        if wanted == self._skipping:
            self._skipping = not wanted
            self._streams["video"].codec_context.skip_frame = "NONREF" if not wanted else "DEFAULT"

    def _end_all(self) -> None:
        if not self._ended.get("audio", True):
            self._audio(None)
        if not self._ended.get("video", True):
            self._flush_video()
        for name in self._ended:
            self._ended[name] = True

    def _audio(self, frame: Any) -> None:
        if frame is not None:
            time_s = self._frame_time_s("audio", frame)
            begin_s = (time_s if time_s is not None else self._start_s) - self._origin_s
            end_s = begin_s + frame.samples / frame.sample_rate
            if end_s <= self._start_s:
                return  # wholly before the run (after a seek)
            if self._lead_samples is None:
                self._lead_samples = max(0, round((self._start_s - begin_s) * self._rate_hz))
        for out in self._resampler.resample(frame):
            samples = np.frombuffer(out.planes[0], "<f4", out.samples)  # packed mono: (n,)
            lead = min(self._lead_samples or 0, samples.shape[0])
            samples = samples[lead:]
            self._lead_samples = (self._lead_samples or 0) - lead
            room = self._samples_wanted - self._samples_out
            samples = samples[:room]
            self._pending["audio"] += np.ascontiguousarray(samples, "<f4").tobytes()
            self._samples_out += samples.shape[0]
        if self._samples_out >= self._samples_wanted:
            self._ended["audio"] = True

    def _video(self, frame: Any) -> None:
        self.frames_decoded += 1
        if frame.interlaced_frame and self._may_skip:
            # fields may come in packets of their own: skipping one of a pair would leave a
            # sampled frame half decoded, so an interlaced video decodes every frame
            self._may_skip = self._skipping = False
            self._streams["video"].codec_context.skip_frame = "DEFAULT"
        begin_s = self._frame_begin_s(frame)
        if self._on_screen is not None or begin_s > self._start_s:
            # the frame on screen until now covers every sampled time before this one starts
            while (
                self._next_frame < self._frames_wanted
                and self._sample_point(self._next_frame) <= begin_s + _EPS
            ):
                self._emit(self._on_screen if self._on_screen is not None else frame)
        self._on_screen = frame
        self._on_screen_begin_s = begin_s
        self._on_screen_end_s = begin_s + self._frame_step_s(frame)
        if self._next_frame >= self._frames_wanted or begin_s >= self._end_s:
            self._flush_video()
            self._ended["video"] = True

    def _flush_video(self) -> None:
        """At the stream's end: the last frame covers the sampled times up to where it ends."""
        if self._on_screen is None:
            return
        while self._next_frame < self._frames_wanted and (
            self._sample_time(self._next_frame) < self._on_screen_end_s - _EPS
            or self._sample_time(self._next_frame) <= self._on_screen_begin_s
        ):
            self._emit(self._on_screen)
        self._on_screen = None

    def _frame_time_s(self, name: str, frame: Any) -> float | None:
        """A decoded frame's timestamp in seconds (None without one): `frame.time` in floats."""
        pts = frame.pts
        return None if pts is None or not self._tick_s[name] else pts * self._tick_s[name]

    def _frame_begin_s(self, frame: Any) -> float:
        """Where a frame starts on the run's timeline; a raw stream without timestamps (raw
        H.264 from a camera) is timed by counting frames, as the CLI does."""
        time_s = self._frame_time_s("video", frame)
        if time_s is not None:
            return time_s - self._origin_s
        if self._on_screen is None:
            return self._start_s if self._start_s > 0 else 0.0
        return self._on_screen_end_s

    def _frame_step_s(self, frame: Any) -> float:
        """How long a frame stays on screen: its own duration, else the stream's frame rate."""
        if frame.duration and self._tick_s["video"]:
            return frame.duration * self._tick_s["video"]
        return self._default_step_s

    def _stream_frame_step_s(self) -> float:
        """One frame's time at the video stream's stated rate (1 / fps without one)."""
        stream = self._streams["video"]
        rate = stream and (stream.average_rate or stream.base_rate or stream.guessed_rate)
        return float(1 / rate) if rate else 1.0 / self._fps

    def _sample_time(self, index: int) -> float:
        return self._start_s + index / self._fps

    def _sample_point(self, index: int) -> float:
        """Sampled frame `index` is the last frame starting before the middle of its slot: the
        rule of ffmpeg's `fps` filter (timestamps rounded to the nearest output tick)."""
        return self._start_s + (index + 0.5) / self._fps

    def _emit(self, frame: Any) -> None:
        assert self._size is not None
        width, height = self._size
        if self._rotation_deg % 180 == 90:
            width, height = height, width  # scaled as stored, then turned
        small = frame.reformat(
            width=width,
            height=height,
            format=self._pixel_format,
            interpolation=self._interpolation,
        ).to_ndarray()  # (h, w) or (h, w, 3)
        if self._rotation_deg:
            small = np.rot90(small, k=-(self._rotation_deg // 90))  # clockwise, as displayed
        self._pending["video"] += np.ascontiguousarray(small).tobytes()
        self._next_frame += 1
