"""The in-process decode (PyAV) against the ffmpeg CLI path on the same generated media: same
probe, same clips, the same audio features, faces found, no child process; bad files, nested
resources and the fallback rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from avemo_core.features.audio import LogMelExtractor
from avemo_core.media import inprocess
from avemo_core.media.clips import ClipExtractor, fixed_windows
from avemo_core.media.decode import DecodeConfig, Span, SpanDecoder
from avemo_core.media.errors import MediaError
from avemo_core.media.inprocess import InProcessUnsupported, PyAvRun, probe_inprocess
from avemo_core.media.probe import probe, probe_ffprobe
from tests.pipelines import media_factory as mf

RATE = 16000


def _decoders(fps: float = 5.0) -> tuple[SpanDecoder, SpanDecoder]:
    return (
        SpanDecoder(RATE, fps, 360, DecodeConfig(in_process=True)),
        SpanDecoder(RATE, fps, 360, DecodeConfig(in_process=False)),
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inprocess")
    mf.mp4(folder / "av.mp4", 4.0)
    mf.av_file(folder / "stereo.mkv", 3.0, audio_rate_hz=44100, channels=2,
               video_codec=("-c:v", "mpeg4"), audio_codec=("-c:a", "libopus"))  # fmt: skip
    mf.av_file(folder / "audio.flac", 3.5, video=False, audio_codec=("-c:a", "flac"))
    mf.av_file(folder / "video.webm", 2.0, audio=False, video_codec=("-c:v", "libvpx"))
    mf.rotated_mp4(folder / "rotated.mp4")
    # B-frames (x264's default preset: frames nothing refers to), timestamps irregular in one
    bframes = ("-c:v", "libx264", "-preset", "medium", "-bf", "3", "-pix_fmt", "yuv420p")
    mf.av_file(folder / "bframes.mp4", 4.0, rate=30, video_codec=bframes)
    mf.av_file(folder / "vfr.mkv", 4.0, rate=30, video_codec=bframes,
               extra=("-vf", "setpts='PTS+0.3*sin(N/5)/TB'", "-fps_mode", "vfr"))  # fmt: skip
    hevc = ("-c:v", "libx265", "-x265-params", "log-level=error:bframes=4")
    mf.av_file(folder / "hevc.mkv", 3.0, rate=25, audio=False, video_codec=hevc)
    # MPEG-TS with a single keyframe: its demuxer seeks by searching timestamps
    longgop = ("-c:v", "libx264", "-preset", "veryfast", "-g", "1000", "-pix_fmt", "yuv420p")
    mf.av_file(folder / "longgop.ts", 4.0, rate=25, video_codec=longgop)
    interlaced = ("-c:v", "libx264", "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-bf", "3")
    mf.av_file(folder / "interlaced.mkv", 3.0, rate=25, size="320x240", video_codec=interlaced)
    return folder


BFRAME_FILES = ["bframes.mp4", "vfr.mkv", "hevc.mkv"]


@pytest.mark.parametrize(
    "name", ["av.mp4", "stereo.mkv", "audio.flac", "video.webm", "rotated.mp4", *BFRAME_FILES]
)
def test_probe_in_process_equals_ffprobe(media: Path, name: str) -> None:
    ours, theirs = probe_inprocess(str(media / name)), probe_ffprobe(str(media / name))
    assert ours.backend == "pyav" and theirs.backend == "ffmpeg"
    assert ours.format_name == theirs.format_name
    assert ours.duration_s == pytest.approx(theirs.duration_s, abs=1e-3)
    assert ours.audio == theirs.audio
    assert ours.video == theirs.video


@pytest.mark.parametrize(
    "name", ["av.mp4", "stereo.mkv", "audio.flac", "video.webm", "rotated.mp4", "bframes.mp4",
             "hevc.mkv"]
)  # fmt: skip
def test_decode_in_process_equals_the_cli(media: Path, name: str) -> None:
    """Same spans, same sample counts, audio within 1e-3 (features too), frames alike."""
    path = str(media / name)
    info = probe(path)
    spans = [Span(s.start_s, s.end_s) for s in fixed_windows(path, info.duration_s, _clip(1.0))]
    ours_decoder, cli_decoder = _decoders()
    ours = list(ours_decoder.decode(path, info, spans))
    cli = list(cli_decoder.decode(path, probe_ffprobe(path), spans))
    assert [d.span for d in ours] == [d.span for d in cli] == spans
    logmel = LogMelExtractor()
    for a, b in zip(ours, cli, strict=True):
        assert (a.audio is None) == (b.audio is None) and (a.frames is None) == (b.frames is None)
        if a.audio is not None and b.audio is not None:
            # the last window may end a few samples apart where a decoder trims its padding
            n = min(a.audio.shape[0], b.audio.shape[0])
            assert abs(a.audio.shape[0] - b.audio.shape[0]) <= RATE // 100
            assert np.abs(a.audio[:n] - b.audio[:n]).max() < 1e-3
            fa, fb = logmel(a.audio[:n]).astype(np.float32), logmel(b.audio[:n]).astype(np.float32)
            loud = fb > np.log(1e-6)  # compare where there is signal (float16 log of silence)
            assert np.abs(fa - fb)[loud].max() < 2e-2
        if a.frames is not None and b.frames is not None:
            assert a.frames.shape == b.frames.shape
            # the same source frames, scaled by the same swscale: within a grey level or two
            assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3.0


def _sampled(path: Path, start_s: float, duration_s: float, fps: float) -> tuple[bytes, int]:
    """The sampled grey frames of a run, and how many frames the decoder handed out."""
    run = PyAvRun(str(path), ["video"], start_s, duration_s, RATE, fps, (80, 60), 0, "gray",
                  "area", 1)  # fmt: skip
    data = b""
    while not run.eof["video"]:
        data += run.read("video", 80 * 60 * 8)
    run.close()
    return data, run.frames_decoded


@pytest.mark.parametrize("name", BFRAME_FILES)
@pytest.mark.parametrize(
    "start_s, duration_s, fps", [(0.0, 5.0, 5.0), (1.3, 2.1, 2.0), (0.5, 3.0, 12.0)]
)
def test_frames_no_sample_needs_are_not_decoded(
    media: Path, name: str, start_s: float, duration_s: float, fps: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Skipping the frames nothing refers to and no sampled time picks leaves every sampled
    frame as it was (irregular timestamps included), with fewer frames decoded."""
    skipped, decoded_skipping = _sampled(media / name, start_s, duration_s, fps)
    monkeypatch.setattr(inprocess, "SKIPPABLE_CODECS", frozenset())
    every, decoded_all = _sampled(media / name, start_s, duration_s, fps)
    assert skipped == every and len(every) > 0
    assert decoded_skipping < decoded_all * (0.9 if fps < 10 else 1.0)


def test_interlaced_video_decodes_every_frame(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fields may come in packets of their own, and skipping one of a pair would leave a sampled
    frame half decoded: once a frame shows the video interlaced, nothing more is skipped."""
    skipped, decoded_skipping = _sampled(media / "interlaced.mkv", 0.0, 3.0, 5.0)
    monkeypatch.setattr(inprocess, "SKIPPABLE_CODECS", frozenset())
    every, decoded_all = _sampled(media / "interlaced.mkv", 0.0, 3.0, 5.0)
    assert skipped == every and decoded_skipping == decoded_all >= 70


@pytest.mark.parametrize("name", ["longgop.ts", "bframes.mp4"])
def test_a_run_starting_mid_file_seeks_back_to_a_keyframe(media: Path, name: str) -> None:
    """A seek that lands on a packet that is not a keyframe (MPEG-TS) would decode nothing:
    the run starting at 2 s gives the frames the run from the start gives for the same times."""
    whole, _ = _sampled(media / name, 0.0, 3.6, 5.0)
    later, _ = _sampled(media / name, 2.0, 1.6, 5.0)
    frame = 80 * 60
    assert len(later) == 8 * frame and later == whole[10 * frame : 18 * frame]


def _clip(window_s: float):  # noqa: ANN202 - a ClipConfig
    from avemo_core.media.clips import ClipConfig

    return ClipConfig(window_s=window_s, min_clip_s=0.5)


def test_seeking_to_a_distant_span_matches_the_cli(media: Path) -> None:
    path = str(media / "av.mp4")
    ours_decoder, cli_decoder = _decoders()
    config = DecodeConfig(in_process=True, max_gap_s=0.0)
    ours_decoder = SpanDecoder(RATE, 5.0, 360, config)
    cli_decoder = SpanDecoder(RATE, 5.0, 360, DecodeConfig(in_process=False, max_gap_s=0.0))
    spans = [Span(0.0, 0.5), Span(2.5, 3.5)]
    ours = list(ours_decoder.decode(path, probe(path), spans))
    cli = list(cli_decoder.decode(path, probe_ffprobe(path), spans))
    for a, b in zip(ours, cli, strict=True):
        assert a.audio is not None and b.audio is not None and a.frames is not None
        assert a.audio.shape == b.audio.shape and np.abs(a.audio - b.audio).max() < 1e-3
        assert b.frames is not None and a.frames.shape == b.frames.shape


def test_no_child_process_and_rotation_kept(media: Path) -> None:
    path = str(media / "rotated.mp4")
    info = probe(path)
    (data,) = SpanDecoder(RATE, 5.0, 360, DecodeConfig()).decode(path, info, [Span(0.0, 1.0)])
    assert data.frames is not None and data.frames.shape[1:] == (160, 80)  # portrait (T, H, W)
    # displayed turned 90 degrees counter-clockwise (as the CLI does): the white top is the left
    assert data.frames[0][:, :20].mean() > 200 and data.frames[0][:, 60:].mean() < 50
    children = Path(f"/proc/{os.getpid()}/task").exists() and [
        p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()
    ]
    assert not children


def _parent(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def test_clip_rows_match_between_backends(media: Path) -> None:
    """Whole rows: same clip count, the same has_audio/has_visual and audio activity."""
    path = str(media / "av.mp4")
    rows = {}
    for in_process in (True, False):
        extractor = ClipExtractor(decode=DecodeConfig(in_process=in_process))
        rows[in_process] = list(extractor.rows(path, path, extractor.probe(path)))
    assert len(rows[True]) == len(rows[False]) >= 1
    for a, b in zip(rows[True], rows[False], strict=True):
        assert (a["has_audio"], a["has_visual"]) == (b["has_audio"], b["has_visual"])
        assert a["audio_active_ratio"] == pytest.approx(b["audio_active_ratio"], abs=0.02)
        assert a["audio_frames"] == b["audio_frames"] and a["visual_frames"] == b["visual_frames"]


def test_bad_files_fall_back_to_ffprobe_for_the_verdict(tmp_path: Path) -> None:
    bad = mf.bad_files(tmp_path / "bad")
    for name in ("text", "noise"):
        with pytest.raises(InProcessUnsupported):
            probe_inprocess(str(bad[name]))
        with pytest.raises(MediaError) as caught:
            probe(str(bad[name]))
        assert (caught.value.stage, caught.value.kind) == ("probe", "invalid_media")


def test_nested_resources_are_never_opened(tmp_path: Path) -> None:
    """A concat list or playlist names other files: the in-process reader refuses to open them,
    and the probe as a whole refuses the container (as with ffprobe)."""
    target = mf.mp4(tmp_path / "secret.mp4", 1.0)
    concat = tmp_path / "list.mp4"
    concat.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    playlist = tmp_path / "playlist.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n")
    for path in (concat, playlist):
        with pytest.raises((InProcessUnsupported, MediaError)):
            probe_inprocess(str(path))
        with pytest.raises(MediaError) as caught:
            probe(str(path))
        assert caught.value.stage == "probe"
