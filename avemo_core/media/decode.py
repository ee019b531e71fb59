"""Windowed streaming decode with ffmpeg: audio as 16 kHz mono float32, video as small grey frames.

One ffmpeg process per stream writes raw samples or frames into a pipe; Python reads one block at a
time and hands out clip spans as soon as they are complete, keeping only the data from the earliest
open span onwards. Memory is therefore bounded by the longest clip plus one block, not by the file.
Frames are sampled (`fps` filter) and scaled inside ffmpeg, so only small frames cross the pipe.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import subprocess
import tempfile
from collections.abc import Iterator, Sequence

import ffmpeg
import numpy as np

from avemo_core.config import FrozenConfig, require
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import MediaInfo, ffmpeg_url

FFMPEG = os.environ.get("AVEMO_FFMPEG", "ffmpeg")
_FFMPEG_PREFIX = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error"]
_EPS = 1e-6
_READ_CHUNK_BYTES = 1 << 20
_SPAN_END_SLACK_S = 0.05  # a span ending this little past where a stream stopped still counts


@dataclasses.dataclass(frozen=True)
class DecodeConfig(FrozenConfig):
    block_s: float = 2.0  # media seconds read from each pipe per step: memory holds one block extra
    max_gap_s: float = 30.0  # spans closer than this share one decode pass; farther ones seek
    min_coverage: float = 0.9  # share of a stream's stated length that must decode, else truncated
    coverage_slack_s: float = 0.5  # absolute allowance on top of min_coverage (stream edge jitter)
    threads: int = 1  # ffmpeg threads per process: Ray runs one worker per CPU
    stall_timeout_s: float = 120.0  # an ffmpeg pipe silent this long is killed (hung input)

    def validate(self) -> None:
        require(self.block_s > 0, "block_s must be > 0")
        require(self.max_gap_s >= 0, "max_gap_s must be >= 0")
        require(0.0 <= self.min_coverage <= 1.0, "min_coverage must be in [0, 1]")
        require(self.coverage_slack_s >= 0, "coverage_slack_s must be >= 0")
        require(self.threads >= 0, "threads must be >= 0 (0: ffmpeg decides)")
        require(self.stall_timeout_s > 0, "stall_timeout_s must be > 0")


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
    frames: np.ndarray | None  # (T, H, W) uint8 grey frames; None when the file has no video


def scaled_size(width: int, height: int, max_side_px: int) -> tuple[int, int]:
    """(w, h) with the longer side at most max_side_px, aspect kept, never upscaled, even sizes."""
    scale = min(1.0, max_side_px / max(width, height))
    w = max(2, round(width * scale / 2) * 2)
    h = max(2, round(height * scale / 2) * 2)
    return w, h


def _input(
    url: str, start_s: float, duration_s: float, threads: int
) -> ffmpeg.nodes.FilterableStream:
    """The input with fixed-point times (ffmpeg rejects exponent notation such as 1e-05).

    No seek at all from the start: a stream without timestamps (raw H.264) yields nothing after one.
    """
    seek = {"ss": f"{start_s:.6f}"} if start_s > 0 else {}
    return ffmpeg.input(
        url, t=f"{duration_s:.6f}", protocol_whitelist="file", threads=threads, **seek
    )


def _audio_args(
    url: str, start_s: float, duration_s: float, rate_hz: int, threads: int
) -> list[str]:
    source = _input(url, start_s, duration_s, threads)
    out = source.output(
        "pipe:", map="0:a:0", ac=1, ar=rate_hz, acodec="pcm_f32le", format="f32le", vn=None
    )
    return out.compile(cmd=list(_FFMPEG_PREFIX))


def _video_args(
    url: str, start_s: float, duration_s: float, fps: float, size: tuple[int, int], threads: int
) -> list[str]:
    source = _input(url, start_s, duration_s, threads)
    # fps first so only sampled frames are scaled; ffmpeg has already applied the rotation
    chain = f"fps={fps!r},scale={size[0]}:{size[1]}:flags=area,format=gray"
    out = source.output(
        "pipe:",
        map="0:v:0",
        vf=chain,
        pix_fmt="gray",
        format="rawvideo",
        an=None,
        filter_threads=max(threads, 1),
    )
    return out.compile(cmd=list(_FFMPEG_PREFIX))


class _Pipe:
    """One ffmpeg process whose stdout is read in exact-size chunks; stderr goes to a temp file.

    A read that waits longer than `stall_timeout_s` for any byte kills ffmpeg and raises: a hung
    input (a pipe that never ends, a stuck network mount) must fail its file, not stall the job.
    """

    def __init__(self, args: list[str], what: str, stall_timeout_s: float) -> None:
        self.what = what
        self.stall_timeout_s = stall_timeout_s
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.eof = False
        self.bytes_read = 0

    def read(self, nbytes: int) -> bytes:
        """Up to nbytes; fewer only at end of stream."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        parts: list[bytes] = []
        remaining = nbytes
        while remaining > 0:
            ready, _, _ = select.select([fd], [], [], self.stall_timeout_s)
            if not ready:
                self.proc.kill()
                raise MediaError(
                    "decode",
                    "stalled",
                    f"ffmpeg ({self.what}) produced nothing for {self.stall_timeout_s:.0f} s",
                )
            chunk = os.read(fd, min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            remaining -= len(chunk)
        data = b"".join(parts)
        self.bytes_read += len(data)
        return data

    def exit_code(self) -> int:
        """ffmpeg's exit status once its output ended (it exits right after closing stdout)."""
        try:
            return self.proc.wait(timeout=self.stall_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def finish(self) -> None:
        """Read what is left, wait for exit; raise MediaError (decode) if ffmpeg failed."""
        while not self.eof:
            self.read(1 << 16)
        code = self.proc.wait()
        if code != 0:
            raise MediaError(
                "decode",
                "ffmpeg_failed",
                f"ffmpeg ({self.what}) exited {code}: {self.error_tail()}",
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
        if self.proc.stdout is not None:
            self.proc.stdout.close()
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

    def _decode_run(self, path: str, info: MediaInfo, run: list[Span]) -> Iterator[SpanData]:
        start = run[0].start_s
        end = max(span.end_s for span in run)
        url = ffmpeg_url(path)
        size = self.frame_size(info)
        threads = self.config.threads
        audio_pipe = video_pipe = None
        stops: dict[str, _Stop] = {}
        try:
            if info.audio is not None:
                args = _audio_args(url, start, end - start, self.sample_rate_hz, threads)
                audio_pipe = _Pipe(args, "audio", self.config.stall_timeout_s)
            if size is not None:
                args = _video_args(url, start, end - start, self.fps, size, threads)
                video_pipe = _Pipe(args, "video", self.config.stall_timeout_s)
            yield from self._assemble(run, info, audio_pipe, video_pipe, size, stops)
            if stops:
                stop = min(stops.values(), key=lambda s: s.at_s)
                raise PartialDecode(stop.kind, stop.message, stop.at_s)
            for pipe in (audio_pipe, video_pipe):
                if pipe is not None:
                    pipe.finish()  # every span is whole; a failure in what follows still counts
        finally:
            for pipe in (audio_pipe, video_pipe):
                if pipe is not None:
                    pipe.close()

    def _stream_stop(
        self, pipe: _Pipe, decoded_s: float, run: list[Span], info: MediaInfo
    ) -> _Stop | None:
        """Where a stream whose output ended stopped short: ffmpeg failed, or far less decoded
        than the stream states (a truncated file often decodes cleanly up to the cut)."""
        start_s = run[0].start_s
        end_s = max(span.end_s for span in run)
        stream = info.audio if pipe.what == "audio" else info.video
        stream_s = stream.duration_s if stream is not None else None
        expected_s = max(0.0, min(end_s, stream_s or info.duration_s) - start_s)
        stopped_s = start_s + decoded_s
        code = pipe.exit_code()
        if code != 0:
            return _Stop(
                stopped_s,
                "ffmpeg_failed",
                f"{pipe.what} decoding failed at {stopped_s:.2f} s (ffmpeg exited {code}: "
                f"{pipe.error_tail()}); clips after it are missing",
            )
        if decoded_s < expected_s * self.config.min_coverage - self.config.coverage_slack_s:
            return _Stop(
                stopped_s,
                "truncated",
                f"{pipe.what} decoding stopped at {stopped_s:.2f} s of the "
                f"{start_s + expected_s:.2f} s stated: the file is truncated or corrupt; "
                "clips after it are missing",
            )
        return None

    def _assemble(
        self,
        run: list[Span],
        info: MediaInfo,
        audio_pipe: _Pipe | None,
        video_pipe: _Pipe | None,
        size: tuple[int, int] | None,
        stops: dict[str, _Stop],
    ) -> Iterator[SpanData]:
        """Yield each span once both streams cover it (or ended); spans past a stream's early
        stop are left out and the stop is recorded in `stops`."""
        run_start_s = run[0].start_s
        block_samples = max(1, round(self.config.block_s * self.sample_rate_hz))
        block_frames = max(1, math.ceil(self.config.block_s * self.fps))
        frame_bytes = size[0] * size[1] if size else 0
        audio = _Buffer(np.zeros(0, np.float32))
        video = _Buffer(np.zeros((0, size[1], size[0]) if size else (0, 0, 0), np.uint8))
        pending = list(run)
        while pending:
            if audio_pipe is not None and not audio_pipe.eof:
                raw = audio_pipe.read(block_samples * 4)
                audio.append(np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4"))
                if audio_pipe.eof:
                    stop = self._stream_stop(audio_pipe, audio.end / self.sample_rate_hz, run, info)
                    if stop is not None:
                        stops["audio"] = stop
            if video_pipe is not None and size is not None and not video_pipe.eof:
                raw = video_pipe.read(block_frames * frame_bytes)
                count = len(raw) // frame_bytes
                frames = np.frombuffer(raw[: count * frame_bytes], np.uint8)
                video.append(frames.reshape(count, size[1], size[0]))  # (T, H, W)
                if video_pipe.eof:
                    stop = self._stream_stop(video_pipe, video.end / self.fps, run, info)
                    if stop is not None:
                        stops["video"] = stop
            audio_done = audio_pipe is None or audio_pipe.eof
            video_done = video_pipe is None or video_pipe.eof
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
                    continue  # the stream stopped inside or before this span: not a whole clip
                yield SpanData(
                    span=span,
                    audio=audio.take(a_start, a_stop) if audio_pipe is not None else None,
                    frames=video.take(v_start, v_stop) if video_pipe is not None else None,
                )
                if pending:
                    audio.drop_before(self._sample_index(pending[0].start_s - run_start_s))
                    video.drop_before(self._frame_index(pending[0].start_s - run_start_s))
