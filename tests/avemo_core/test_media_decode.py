"""Streaming decode against losslessly written media: exact samples and frames per span, seeking,
rotation, truncation, and memory bounded by the window rather than the file."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from avemo_core.config import ConfigError
from avemo_core.media.decode import (
    DecodeConfig,
    PartialDecode,
    Span,
    SpanDecoder,
    group_runs,
    scaled_size,
)
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import probe
from bench.common.procs import processes
from tests.pipelines import media_factory as mf

RATE = 16000


def decoder(fps: float = 5.0, max_side: int = 360, **config: float | str) -> SpanDecoder:
    return SpanDecoder(RATE, fps, max_side, DecodeConfig(**config))


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("lossless")
    samples = np.random.default_rng(1).integers(-20000, 20000, int(3.3 * RATE), dtype=np.int16)
    frames = np.zeros((40, 48, 64), np.uint8)  # (T, H, W) at 10 fps: 4 s
    for k in range(40):
        frames[k] = (k * 6 + np.arange(64)[None, :]) % 256  # each frame distinct, with a gradient
    return {
        "wav": mf.wav(folder / "tone.wav", samples),
        "samples": samples.astype(np.float32) / 32768.0,
        "mkv": mf.grey_video(folder / "frames.mkv", frames, fps=10),
        "frames": frames,
    }


def test_windows_reassemble_the_exact_samples(lossless: dict[str, object]) -> None:
    path, samples = str(lossless["wav"]), lossless["samples"]
    assert isinstance(samples, np.ndarray)
    spans = [Span(0.0, 1.0), Span(1.0, 2.0), Span(2.0, 3.0), Span(3.0, 3.3)]
    out = list(decoder(block_s=0.7).decode(path, probe(path), spans))
    assert [d.span for d in out] == spans
    assert [d.audio.shape[0] for d in out if d.audio is not None] == [16000, 16000, 16000, 4800]
    assert all(d.frames is None for d in out)
    np.testing.assert_array_equal(
        np.concatenate([d.audio for d in out if d.audio is not None]), samples
    )


def test_frames_sampled_at_fps_are_the_source_frames(lossless: dict[str, object]) -> None:
    path, frames = str(lossless["mkv"]), lossless["frames"]
    assert isinstance(frames, np.ndarray)
    out = list(decoder(fps=5.0).decode(path, probe(path), [Span(0.0, 2.0), Span(2.0, 4.0)]))
    assert all(d.audio is None for d in out)
    np.testing.assert_array_equal(out[0].frames, frames[0:20:2])  # 10 fps source, every 2nd frame
    np.testing.assert_array_equal(out[1].frames, frames[20:40:2])


def test_overlapping_and_distant_spans(lossless: dict[str, object]) -> None:
    """Overlaps share one pass; a span beyond max_gap_s is reached by seeking: both exact."""
    path, samples = str(lossless["wav"]), lossless["samples"]
    assert isinstance(samples, np.ndarray)
    spans = [Span(0.5, 1.5), Span(1.0, 2.0), Span(2.9, 3.2)]
    assert [len(r) for r in group_runs(spans, 0.5)] == [2, 1]
    out = list(decoder(max_gap_s=0.5, block_s=0.25).decode(path, probe(path), spans))
    for data in out:
        start, stop = round(data.span.start_s * RATE), round(data.span.end_s * RATE)
        np.testing.assert_array_equal(data.audio, samples[start:stop])
    video, frames = str(lossless["mkv"]), lossless["frames"]
    assert isinstance(frames, np.ndarray)
    seeked = list(decoder(fps=10.0, max_gap_s=0.0).decode(video, probe(video), [Span(2.5, 3.0)]))
    np.testing.assert_array_equal(seeked[0].frames, frames[25:30])


def test_scaled_inside_ffmpeg_to_the_requested_size(lossless: dict[str, object]) -> None:
    path = str(lossless["mkv"])
    assert scaled_size(1920, 1080, 360) == (360, 202)
    assert scaled_size(64, 48, 360) == (64, 48)  # never upscaled
    out = list(decoder(max_side=32).decode(path, probe(path), [Span(0.0, 1.0)]))
    assert out[0].frames is not None and out[0].frames.shape == (5, 24, 32)


def test_colour_frames_when_the_face_detector_wants_them(lossless: dict[str, object]) -> None:
    """pixel_format bgr24: (T, H, W, 3) frames of the same sampled pictures (grey in, grey out)."""
    path, frames = str(lossless["mkv"]), lossless["frames"]
    assert isinstance(frames, np.ndarray)
    grey = next(iter(decoder().decode(path, probe(path), [Span(0.0, 2.0)]))).frames
    colour = next(iter(decoder(pixel_format="bgr24").decode(path, probe(path), [Span(0.0, 2.0)])))
    assert colour.frames is not None and colour.frames.shape == (10, 48, 64, 3)
    np.testing.assert_array_equal(colour.frames[..., 0], colour.frames[..., 2])
    assert np.abs(colour.frames[..., 1].astype(int) - frames[0:20:2]).max() <= 2
    np.testing.assert_array_equal(grey, frames[0:20:2])


def _ffmpeg_children() -> int:
    """Live ffmpeg processes started by this test process."""
    return sum(p.name == "ffmpeg" and p.ppid == os.getpid() and p.alive for p in processes())


def test_one_ffmpeg_process_decodes_audio_and_video(tmp_path: Path) -> None:
    """The CLI path: both streams come from one process (one start, one demux pass), each on its
    own pipe."""
    path = str(mf.mp4(tmp_path / "av.mp4", 3.0))
    seen = []
    cli = decoder(block_s=0.5, in_process=False)
    for data in cli.decode(path, cli.probe(path), [Span(0.0, 1.0), Span(1.0, 3.0)]):
        seen.append(_ffmpeg_children())
        assert data.audio is not None and data.frames is not None
        assert data.audio.shape[0] == round((data.span.end_s - data.span.start_s) * RATE)
        assert data.frames.shape[0] == round((data.span.end_s - data.span.start_s) * 5)
    assert seen[0] == 1
    assert _ffmpeg_children() == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"pixel_format": "yuv420p"}, "pixel_format"), ({"scale_flags": "lanczos9"}, "scale_flags")],
)
def test_decode_config_is_validated(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        DecodeConfig(**changes)
    assert DecodeConfig(pixel_format="bgr24").channels == 3 and DecodeConfig().channels == 1


def test_rotation_is_applied_to_decoded_frames(tmp_path: Path) -> None:
    path = str(mf.rotated_mp4(tmp_path / "rotated.mp4"))  # stored: top half white, 160x80
    frames = next(iter(decoder().decode(path, probe(path), [Span(0.0, 1.0)]))).frames
    assert frames is not None and frames.shape[1:] == (160, 80)  # (H, W): portrait
    # turned 90 degrees counter-clockwise: the stored top half is now the left half
    assert frames[:, :, :36].mean() > 250 and frames[:, :, 44:].mean() < 5


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_file_gives_the_spans_before_the_cut(tmp_path: Path, suffix: str) -> None:
    """Half the bytes of a 4 s file: the whole spans before the cut come out, with their full
    data, then PartialDecode names the time decoding stopped; no span past it is yielded."""
    good = mf.av_file(tmp_path / f"good{suffix}", 4.0, extra=("-movflags", "+faststart"))
    cut = str(mf.truncated(tmp_path / f"cut{suffix}", good))
    info = probe(cut)  # the index at the front still promises 4 s
    assert info.duration_s > 3.9
    spans = [Span(0.0, 1.0), Span(1.0, 2.0), Span(2.0, 3.0), Span(3.0, 4.0)]
    got = []
    with pytest.raises(PartialDecode) as caught:
        for data in decoder().decode(cut, info, spans):
            got.append(data)
    err = caught.value
    assert (err.stage, err.kind) == ("decode", "truncated")
    assert 1.0 <= err.stopped_at_s <= 2.5  # about half of the media
    assert f"stopped at {err.stopped_at_s:.2f} s of the 4." in err.message
    assert got and all(d.span.end_s <= err.stopped_at_s + 0.05 for d in got)
    assert got[0].span == Span(0.0, 1.0)
    for data in got:  # every yielded span is whole
        assert data.audio is not None and data.audio.shape == (RATE,)
        assert data.frames is not None and data.frames.shape[0] == 5


def test_cut_at_the_start_yields_nothing_and_says_where(tmp_path: Path) -> None:
    good = mf.mp4(tmp_path / "good.mp4", 4.0)
    cut = str(mf.truncated(tmp_path / "cut.mp4", good, keep=0.15))
    info = probe(cut)
    decoded = []
    with pytest.raises(PartialDecode) as caught:
        for data in decoder().decode(cut, info, [Span(0.0, 2.0), Span(2.0, 4.0)]):
            decoded.append(data)
    assert decoded == [] and caught.value.stopped_at_s < 2.0


def test_hung_input_fails_the_file_instead_of_stalling(
    lossless: dict[str, object], tmp_path: Path
) -> None:
    """ffmpeg blocks forever opening a FIFO nobody writes: the watchdog kills it and says so."""
    info = probe(str(lossless["mkv"]))
    fifo = tmp_path / "never-written.mkv"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        list(decoder(stall_timeout_s=1.0).decode(str(fifo), info, [Span(0.0, 2.0)]))
    assert (caught.value.stage, caught.value.kind) == ("decode", "stalled")
    assert "produced nothing for 1 s" in caught.value.message
    assert time.monotonic() - started < 30


def test_memory_is_bounded_by_the_window_not_the_file(tmp_path: Path) -> None:
    """5 minutes of audio and video through 2 s windows: peak Python/numpy memory stays at a
    few windows, far below the decoded file (19 MB of samples plus 9 MB of frames)."""
    path = tmp_path / "long.mkv"
    mf.ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=5:duration=300",
        "-f", "lavfi", "-i", "sine=frequency=300:duration=300:sample_rate=16000",
        "-c:v", "ffv1", "-c:a", "pcm_s16le", path,
    )  # fmt: skip
    info = probe(str(path))
    spans = [Span(float(s), float(s + 2)) for s in range(0, 300, 2)]
    tracemalloc.start()
    try:
        samples = frames = 0
        for data in decoder(block_s=1.0).decode(str(path), info, spans):
            assert data.audio is not None and data.frames is not None
            samples += data.audio.shape[0]
            frames += data.frames.shape[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert samples == 300 * RATE and frames == 1500
    assert peak < 3_000_000, f"peak traced memory {peak} bytes"
