"""Windowed streaming decode with ffmpeg: audio as 16 kHz mono float32, video as small frames.

One ffmpeg process per pass over a file demuxes it once and writes each stream into its own pipe
(raw samples, raw frames); Python reads whichever pipe has data, so neither output can block the
other, and hands out clip spans as soon as they are complete, keeping only the data from the
earliest open span onwards. Memory is therefore bounded by the longest clip plus one block, not by
the file. Frames are sampled (`fps` filter) before they are scaled, and scaled and converted inside
ffmpeg, so only sampled small frames are scaled and cross the pipe.

Where the time goes (bench/extract.py's 720p25 talking-head H.264 + AAC, 20 s, one core, CPU
seconds, medians of 5-9 runs on a shared 2-core machine at load 15-26, so +-15 %): bare
`ffmpeg -i F -f null -` 0.64-0.76; H.264 decoding alone 0.57 (every frame: the stream has no
B-frames, each P-frame needs the one before, so no frame can be skipped); one ffmpeg or ffprobe
start 0.09 (library loading); sampling and scaling to 640x360 grey about 0.1; the audio (AAC
decode, resampling) 0.01. The former second ffmpeg process for the audio cost a start and a demux
pass per file; one process now does both: decode alone went from 0.63-0.76x to 0.70-0.85x of the
bare decode in wall time (0.65-0.69x to 0.71-0.76x in CPU), the rest being the probe (another
start) and the scaling. The scaler (area, bilinear, fast_bilinear) and converting to grey before
or after scaling differ by less than the noise; `area` stays, as it averages source pixels.
In-process (PyAV) the same holds: of the 500 frames a 20 s file decodes, only the 100 sampled
ones are converted and scaled (`PyAvRun._emit`), once, to the decoded size; face detection then
shrinks only the square around the followed face (or, once per clip, the frame to 320 px).
Profiled with faces on (CPU seconds for 2 x 20 s, load 9, with cProfile): packet decoding 1.28,
scaling 0.23, audio resampling 0.19, face detection 0.38, features and Parquet 0.1.
Re-profiled on one 60 s bench file, one quiet core (CPU s): packet decoding 1.90 (bare ffmpeg
takes 1.7-1.9 s for the whole file), face detection 0.35, conversion to grey 360x202 0.16,
audio resampling 0.12, Python per packet about 0.2, features 0.1, Parquet 0.09. Taking the grey
frame straight from the luma plane (OpenCV resize plus a range lookup table) was tried and is
slower at this size: swscale's area scaler takes 0.35-0.5 ms for 1280x720 -> 360x202, OpenCV's
INTER_AREA 2.2-2.4 ms at that non-integer ratio (0.45 ms only for an exact halving).
Frame times now come from integer timestamps times a float tick (PyAV's `frame.time` built
Fractions, about 0.1 s per 60 s file under cProfile). Where the rest goes, on one core: per 60 s
file the extraction task takes 2.5-2.9 CPU s in a plain process against 1.9 s for the bare decode,
and inside a Ray worker about 5 % more, while Ray's own processes (dashboard agent, Ray Data's
stats and autoscaling actors, raylet, GCS) take another 5-7 % of the core: the 0.6x of the
one-CPU bench.
Again on the AMD machine (60 s bench file, one core, the task in a plain process): 1.5-1.6 CPU-s
in all, of them packet decoding (video and audio) 1.02, face detection 0.17 with detection on
every other sampled frame and 0.13 on every third (boxes between interpolated: faces/tracking.py),
conversion to grey 0.09, audio resampling 0.06 (soxr instead: 0.02 less, not worth a second
resampler), log-mel 0.07, Python per packet about 0.1. In a timed 1-CPU Ray run of 4 such files
(6.8 s wall) the worker took 6.3 CPU-s, the driver 0.16, Ray's processes about 0.35; idle, those
take 0.63 CPU-s per 10 s, the dashboard agent's 5 s node sampling 0.09 of it (0.01 at the 60 s a
local cluster now gets: pipelines/ray_session.py). Decoding every frame of a stream without
B-frames is 0.92x of the bare decode by itself, so the one-CPU bench stays at 0.64x there.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence

import ffmpeg
import numpy as np

from avemo_core.config import FrozenConfig, require
from avemo_core.media.errors import MediaError
from avemo_core.media.inprocess import PyAvRun, is_regular_file
from avemo_core.media.probe import MediaInfo, ffmpeg_url, probe

FFMPEG = os.environ.get("AVEMO_FFMPEG", "ffmpeg")
_FFMPEG_PREFIX = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error"]
_EPS = 1e-6
_READ_CHUNK_BYTES = 1 << 20
PIXEL_CHANNELS = {"gray": 1, "bgr24": 3, "rgb24": 3}  # pixel formats frames may be decoded to
SCALE_FLAGS = ("area", "bilinear", "fast_bilinear", "bicubic", "neighbor")
_SPAN_END_SLACK_S = 0.05  # a span ending this little past where a stream stopped still counts


@dataclasses.dataclass(frozen=True)
class DecodeConfig(FrozenConfig):
    block_s: float = 2.0  # media seconds read from each pipe per step: memory holds one block extra
    max_gap_s: float = 30.0  # spans closer than this share one decode pass; farther ones seek
    min_coverage: float = 0.9  # share of a stream's stated length that must decode, else truncated
    coverage_slack_s: float = 0.5  # absolute allowance on top of min_coverage (stream edge jitter)
    threads: int = 1  # ffmpeg threads per process: Ray runs one worker per CPU
    stall_timeout_s: float = 120.0  # an ffmpeg pipe silent this long is killed (hung input)
    pixel_format: str = "gray"  # decoded frames: gray (T, H, W) or bgr24 / rgb24 (T, H, W, 3)
    scale_flags: str = "area"  # ffmpeg scaler (swscale flags) used to shrink frames
    in_process: bool = True  # probe and decode with PyAV in this process; False: the ffmpeg CLI

    def validate(self) -> None:
        require(self.block_s > 0, "block_s must be > 0")
        require(self.max_gap_s >= 0, "max_gap_s must be >= 0")
        require(0.0 <= self.min_coverage <= 1.0, "min_coverage must be in [0, 1]")
        require(self.coverage_slack_s >= 0, "coverage_slack_s must be >= 0")
        require(self.threads >= 0, "threads must be >= 0 (0: ffmpeg decides)")
        require(self.stall_timeout_s > 0, "stall_timeout_s must be > 0")
        require(
            self.pixel_format in PIXEL_CHANNELS,
            f"pixel_format must be one of {sorted(PIXEL_CHANNELS)}",
        )
        require(self.scale_flags in SCALE_FLAGS, f"scale_flags must be one of {SCALE_FLAGS}")

    @property
    def channels(self) -> int:
        return PIXEL_CHANNELS[self.pixel_format]


class PartialDecode(MediaError):
    """Decoding stopped early at `stopped_at_s`: the spans before it were yielded, none after."""

    def __init__(self, kind: str, message: str, stopped_at_s: float) -> None:
        super().__init__("decode", kind, message)
        self.stopped_at_s = stopped_at_s


@dataclasses.dataclass(frozen=True)
class _Stop:
    """Where one stream of a run stopped short, and why (an error kind and a message)."""

    at_s: float
    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class Span:
    """A time span of the media to decode, in seconds from the start of the file."""

    start_s: float
    end_s: float


@dataclasses.dataclass
class SpanData:
    span: Span
    audio: np.ndarray | None  # (N,) float32 mono samples; None when the file has no audio
    frames: np.ndarray | None  # (T, H, W) uint8 grey, or (T, H, W, 3); None when no video


def scaled_size(width: int, height: int, max_side_px: int) -> tuple[int, int]:
    """(w, h) with the longer side at most max_side_px, aspect kept, never upscaled, even sizes."""
    scale = min(1.0, max_side_px / max(width, height))
    w = max(2, round(width * scale / 2) * 2)
    h = max(2, round(height * scale / 2) * 2)
    return w, h


def _run_args(
    url: str,
    start_s: float,
    duration_s: float,
    outputs: dict[str, int],
    rate_hz: int,
    fps: float,
    size: tuple[int, int] | None,
    config: DecodeConfig,
) -> list[str]:
    """One ffmpeg command writing each stream in `outputs` (name -> fd) into its own pipe.

    Fixed-point times (ffmpeg rejects exponent notation such as 1e-05); no seek at all from the
    start, as a stream without timestamps (raw H.264) yields nothing after one.
    """
    seek = {"ss": f"{start_s:.6f}"} if start_s > 0 else {}
    source = ffmpeg.input(
        url, t=f"{duration_s:.6f}", protocol_whitelist="file", threads=config.threads, **seek
    )
    streams = []
    if "audio" in outputs:
        streams.append(
            source.output(
                f"pipe:{outputs['audio']}",
                map="0:a:0", ac=1, ar=rate_hz, acodec="pcm_f32le", format="f32le",
            )
        )  # fmt: skip
    if "video" in outputs:
        assert size is not None
        # fps first so only sampled frames are scaled; ffmpeg has already applied the rotation
        chain = f"fps={fps!r},scale={size[0]}:{size[1]}:flags={config.scale_flags}"
        streams.append(
            source.output(
                f"pipe:{outputs['video']}",
                map="0:v:0", vf=f"{chain},format={config.pixel_format}",
                pix_fmt=config.pixel_format, format="rawvideo",
            )
        )  # fmt: skip
    args = ffmpeg.merge_outputs(*streams).compile(cmd=list(_FFMPEG_PREFIX))
    return [*args[:1], "-filter_threads", str(max(config.threads, 1)), *args[1:]]


class _Ffmpeg:
    """One ffmpeg process writing each stream into its own pipe; stderr goes to a temp file.

    `read(name, n)` gives n bytes of one stream while draining every pipe that has data, so ffmpeg
    never blocks on a full pipe we are not reading. A wait longer than `stall_timeout_s` for any
    byte kills ffmpeg and raises: a hung input must fail its file, not stall the job.
    """

    def __init__(
        self, names: list[str], build: Callable[[dict[str, int]], list[str]], timeout_s: float
    ) -> None:
        self.stall_timeout_s = timeout_s
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        pipes = {name: os.pipe() for name in names}  # name -> (read fd, write fd)
        self._fds = {name: r for name, (r, _) in pipes.items()}
        writers = [w for _, w in pipes.values()]
        try:
            self.proc = subprocess.Popen(
                build({name: w for name, (_, w) in pipes.items()}),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=writers,
            )
        finally:
            for fd in writers:
                os.close(fd)
        self._pending = {name: bytearray() for name in names}
        self.eof = dict.fromkeys(names, False)  # the stream ended and all of it was read

    def read(self, name: str, nbytes: int) -> bytes:
        """Up to nbytes of stream `name`; fewer only at its end."""
        pending = self._pending[name]
        while len(pending) < nbytes and self._fds.get(name) is not None:
            self._pump()
        data = bytes(pending[:nbytes])
        del pending[:nbytes]
        if self._fds.get(name) is None and not pending:
            self.eof[name] = True
        return data

    def _pump(self) -> None:
        """Read once from every pipe that has data; a pipe at its end is closed."""
        open_fds = {fd: name for name, fd in self._fds.items() if fd is not None}
        ready, _, _ = select.select(list(open_fds), [], [], self.stall_timeout_s)
        if not ready:
            self.proc.kill()
            raise MediaError(
                "decode",
                "stalled",
                f"ffmpeg ({'+'.join(self._fds)}) produced nothing for {self.stall_timeout_s:.0f} s",
            )
        for fd in ready:
            chunk = os.read(fd, _READ_CHUNK_BYTES)
            if chunk:
                self._pending[open_fds[fd]] += chunk
            else:
                os.close(fd)
                self._fds[open_fds[fd]] = None

    def all_ended(self) -> bool:
        return all(fd is None for fd in self._fds.values())

    def exit_code(self) -> int:
        """ffmpeg's exit status once every pipe ended (it exits right after closing them)."""
        try:
            return self.proc.wait(timeout=self.stall_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def finish(self) -> None:
        """Drain what is left, wait for exit; raise MediaError (decode) if ffmpeg failed."""
        while not self.all_ended():
            self._pump()
            for pending in self._pending.values():
                pending.clear()
        code = self.exit_code()
        if code != 0:
            raise MediaError(
                "decode", "ffmpeg_failed", f"ffmpeg exited {code}: {self.error_tail()}"
            )

    def error_tail(self) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 2000))
        text = self._stderr.read().decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else "no message from ffmpeg"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for name, fd in self._fds.items():
            if fd is not None:
                os.close(fd)
                self._fds[name] = None
        self._stderr.close()


def group_runs(spans: Sequence[Span], max_gap_s: float) -> list[list[Span]]:
    """Spans sorted by start, grouped so each group is decoded in one pass from its first start."""
    runs: list[list[Span]] = []
    run_end = -math.inf
    for span in sorted(spans, key=lambda s: (s.start_s, s.end_s)):
        if runs and span.start_s <= run_end + max_gap_s:
            runs[-1].append(span)
            run_end = max(run_end, span.end_s)
        else:
            runs.append([span])
            run_end = span.end_s
    return runs


class _Buffer:
    """Decoded items of one stream from absolute index `base` on; items before `base` are gone."""

    def __init__(self, empty: np.ndarray) -> None:
        self.data = empty
        self.base = 0

    @property
    def end(self) -> int:
        return self.base + self.data.shape[0]

    def append(self, items: np.ndarray) -> None:
        self.data = np.concatenate([self.data, items]) if self.data.shape[0] else items

    def take(self, start: int, stop: int) -> np.ndarray:
        return self.data[max(0, start - self.base) : max(0, stop - self.base)].copy()

    def drop_before(self, index: int) -> None:
        cut = min(max(0, index - self.base), self.data.shape[0])
        if cut:
            self.data = self.data[cut:].copy()
            self.base += cut


class SpanDecoder:
    """Decodes the requested spans of one local file, streaming; yields SpanData in start order."""

    def __init__(
        self, sample_rate_hz: int, fps: float, max_side_px: int, config: DecodeConfig
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.fps = fps
        self.max_side_px = max_side_px
        self.config = config

    def probe(self, path: str) -> MediaInfo:
        """The file's MediaInfo, probed the way this decoder decodes (in-process or the CLI)."""
        return probe(path, in_process=self.config.in_process)

    def frame_size(self, info: MediaInfo) -> tuple[int, int] | None:
        """(w, h) of decoded frames, or None for audio-only media."""
        if info.video is None:
            return None
        return scaled_size(info.video.width_px, info.video.height_px, self.max_side_px)

    def decode(self, path: str, info: MediaInfo, spans: Sequence[Span]) -> Iterator[SpanData]:
        """SpanData per span in start order; PartialDecode after the last whole span if the
        file stops decoding early (the spans before the stop have been yielded by then)."""
        for run in group_runs(spans, self.config.max_gap_s):
            yield from self._decode_run(path, info, run)

    def _sample_index(self, offset_s: float) -> int:
        return round(offset_s * self.sample_rate_hz)

    def _frame_index(self, offset_s: float) -> int:
        """First sampled frame at or after offset_s (frame k is at k / fps)."""
        return math.ceil(offset_s * self.fps - _EPS)

    def _frame_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        """(H, W) for grey frames, (H, W, C) otherwise."""
        channels = self.config.channels
        return (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)

    def _decode_run(self, path: str, info: MediaInfo, run: list[Span]) -> Iterator[SpanData]:
        start = run[0].start_s
        end = max(span.end_s for span in run)
        size = self.frame_size(info)
        names = [n for n, has in (("audio", info.audio), ("video", size)) if has is not None]
        if not names:
            return
        url = ffmpeg_url(path)

        def build(fds: dict[str, int]) -> list[str]:
            return _run_args(
                url, start, end - start, fds, self.sample_rate_hz, self.fps, size, self.config
            )

        stops: dict[str, _Stop] = {}
        process: _Ffmpeg | PyAvRun
        if self.config.in_process and info.backend == "pyav" and is_regular_file(path):
            rotation = info.video.rotation_deg if info.video is not None else 0
            process = PyAvRun(
                path, names, start, end - start, self.sample_rate_hz, self.fps, size, rotation,
                self.config.pixel_format, self.config.scale_flags, self.config.threads,
            )  # fmt: skip
        else:
            process = _Ffmpeg(names, build, self.config.stall_timeout_s)
        try:
            yield from self._assemble(run, info, process, size, stops)
            if stops:
                stop = min(stops.values(), key=lambda s: s.at_s)
                raise PartialDecode(stop.kind, stop.message, stop.at_s)
            process.finish()  # every span is whole; a failure in what follows still counts
        finally:
            process.close()

    def _stream_stop(
        self, what: str, decoded_s: float, run: list[Span], info: MediaInfo
    ) -> _Stop | None:
        """Where a stream whose output ended stopped short of what the file states (a truncated
        file often decodes cleanly up to the cut), or None when it covered its part."""
        start_s = run[0].start_s
        end_s = max(span.end_s for span in run)
        stream = info.audio if what == "audio" else info.video
        stream_s = stream.duration_s if stream is not None else None
        expected_s = max(0.0, min(end_s, stream_s or info.duration_s) - start_s)
        if decoded_s >= expected_s * self.config.min_coverage - self.config.coverage_slack_s:
            return None
        stopped_s = start_s + decoded_s
        return _Stop(
            stopped_s,
            "truncated",
            f"{what} decoding stopped at {stopped_s:.2f} s of the {start_s + expected_s:.2f} s "
            "stated: the file is truncated or corrupt; clips after it are missing",
        )

    def _failure_stop(
        self, process: _Ffmpeg | PyAvRun, decoded_s: dict[str, float], run_start_s: float
    ) -> _Stop | None:
        """Once every pipe ended: if ffmpeg failed, where the shorter stream stopped."""
        code = process.exit_code()
        if code == 0:
            return None
        stopped_s = run_start_s + min(decoded_s.values())
        return _Stop(
            stopped_s,
            "ffmpeg_failed",
            f"decoding failed at {stopped_s:.2f} s (ffmpeg exited {code}: "
            f"{process.error_tail()}); clips after it are missing",
        )

    def _assemble(
        self,
        run: list[Span],
        info: MediaInfo,
        process: _Ffmpeg | PyAvRun,
        size: tuple[int, int] | None,
        stops: dict[str, _Stop],
    ) -> Iterator[SpanData]:
        """Yield each span once both streams cover it (or ended); spans past a stream's early
        stop are left out and the stop is recorded in `stops`."""
        run_start_s = run[0].start_s
        has_audio = "audio" in process.eof
        has_video = "video" in process.eof and size is not None
        block_samples = max(1, round(self.config.block_s * self.sample_rate_hz))
        block_frames = max(1, math.ceil(self.config.block_s * self.fps))
        frame_shape = self._frame_shape(size) if size else (0, 0)
        frame_bytes = math.prod(frame_shape)
        audio = _Buffer(np.zeros(0, np.float32))
        video = _Buffer(np.zeros((0, *frame_shape), np.uint8))
        pending = list(run)
        while pending:
            if has_audio and not process.eof["audio"]:
                raw = process.read("audio", block_samples * 4)
                audio.append(np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4"))
                if process.eof["audio"]:
                    stop = self._stream_stop("audio", audio.end / self.sample_rate_hz, run, info)
                    if stop is not None:
                        stops["audio"] = stop
            if has_video and not process.eof["video"]:
                raw = process.read("video", block_frames * frame_bytes)
                count = len(raw) // frame_bytes
                frames = np.frombuffer(raw[: count * frame_bytes], np.uint8)
                video.append(frames.reshape(count, *frame_shape))  # (T, H, W) or (T, H, W, C)
                if process.eof["video"]:
                    stop = self._stream_stop("video", video.end / self.fps, run, info)
                    if stop is not None:
                        stops["video"] = stop
            audio_done = not has_audio or process.eof["audio"]
            video_done = not has_video or process.eof["video"]
            if audio_done and video_done and "ffmpeg" not in stops:
                decoded = {"audio": audio.end / self.sample_rate_hz} if has_audio else {}
                decoded |= {"video": video.end / self.fps} if has_video else {}
                failure = self._failure_stop(process, decoded, run_start_s)
                if failure is not None:
                    stops["ffmpeg"] = failure
            stopped_s = min((stop.at_s for stop in stops.values()), default=math.inf)
            while pending:
                span = pending[0]
                a_stop = self._sample_index(span.end_s - run_start_s)
                v_stop = self._frame_index(span.end_s - run_start_s)
                if not (audio_done or audio.end >= a_stop) or not (
                    video_done or video.end >= v_stop
                ):
                    break
                a_start = self._sample_index(span.start_s - run_start_s)
                v_start = self._frame_index(span.start_s - run_start_s)
                pending.pop(0)
                if span.end_s > stopped_s + _SPAN_END_SLACK_S:
                    continue  # a stream stopped inside or before this span: not a whole clip
                yield SpanData(
                    span=span,
                    audio=audio.take(a_start, a_stop) if has_audio else None,
                    frames=video.take(v_start, v_stop) if has_video else None,
                )
                if pending:
                    audio.drop_before(self._sample_index(pending[0].start_s - run_start_s))
                    video.drop_before(self._frame_index(pending[0].start_s - run_start_s))
