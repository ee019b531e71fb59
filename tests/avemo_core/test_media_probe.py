"""ffprobe on real generated files: streams, durations, rotation, bad files, hostile names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avemo_core.media.decode import DecodeConfig, Span, SpanDecoder
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import parse_clock_s, parse_probe, probe, probe_ffprobe
from tests.pipelines import media_factory as mf


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    mf.mp4(folder / "av.mp4", 2.0)
    mf.av_file(folder / "audio.m4a", 1.5, video=False)
    mf.mp4(folder / "video.mp4", 1.5, audio=False)
    mf.rotated_mp4(folder / "rotated.mp4")
    mf.bad_files(folder / "bad")
    return folder


def test_probe_reports_streams_and_duration(media: Path) -> None:
    info = probe(str(media / "av.mp4"))
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.channels == 1
    assert info.video is not None and info.video.codec == "h264"
    assert (info.video.width_px, info.video.height_px, info.video.rotation_deg) == (160, 120, 0)


def test_probe_single_modality(media: Path) -> None:
    audio_only = probe(str(media / "audio.m4a"))
    assert audio_only.video is None and audio_only.audio is not None
    video_only = probe(str(media / "video.mp4"))
    assert video_only.audio is None and video_only.video is not None


def test_probe_rotation_swaps_display_size(media: Path) -> None:
    video = probe(str(media / "rotated.mp4")).video
    assert video is not None
    # stored 160x80, displayed portrait: the display matrix turns it 90 degrees counter-clockwise
    assert (video.width_px, video.height_px, video.rotation_deg) == (80, 160, 270)


@pytest.mark.parametrize(
    ("name", "stage", "kind", "words"),
    [
        ("empty.mp4", "probe", "empty_file", "0 bytes"),
        ("notes.mp4", "probe", "invalid_media", "Invalid data"),
        ("noise.mkv", "probe", "invalid_media", "Invalid data"),
        ("missing.mp4", "read", "not_found", "no such file"),
    ],
)
def test_probe_bad_files_say_why(media: Path, name: str, stage: str, kind: str, words: str) -> None:
    with pytest.raises(MediaError) as caught:
        probe(str(media / "bad" / name))
    assert (caught.value.stage, caught.value.kind) == (stage, kind)
    assert words in caught.value.message


def test_stream_without_a_stated_duration_is_timed_from_its_packets(tmp_path: Path) -> None:
    """A raw H.264 stream has no container duration: the packets give it, and it decodes."""
    raw = tmp_path / "camera.h264"
    mf.ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "3", "-c:v", "libx264",
              "-f", "h264", raw)  # fmt: skip
    info = probe(str(raw))
    assert info.video is not None and info.video.duration_s is None
    assert info.duration_s == pytest.approx(3.0, abs=0.15)
    decoded = list(SpanDecoder(16000, 5.0, 160, DecodeConfig()).decode(
        str(raw), info, [Span(0.0, info.duration_s)]))  # fmt: skip
    assert decoded[0].frames is not None and decoded[0].frames.shape[0] == 15


def test_playlist_disguised_as_media_is_refused(media: Path, tmp_path: Path) -> None:
    # a text playlist named .mp4 would make ffmpeg open other files; it must never be decoded
    playlist = tmp_path / "playlist.mp4"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{media / 'av.mp4'}\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(MediaError) as caught:
        probe(str(playlist))
    assert (caught.value.stage, caught.value.kind) == ("probe", "unsupported_format")


def test_parse_probe_ignores_cover_art_and_needs_a_stream() -> None:
    cover = {"codec_type": "video", "width": 300, "height": 300, "disposition": {"attached_pic": 1}}
    audio = {"codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100", "channels": 2}
    info = parse_probe(
        {"format": {"format_name": "mp3", "duration": "3.5"}, "streams": [cover, audio]}
    )
    assert info.video is None and info.audio is not None and info.duration_s == 3.5
    with pytest.raises(MediaError, match="no audio or video stream"):
        parse_probe({"format": {"format_name": "mp3", "duration": "3.5"}, "streams": [cover]})


@pytest.mark.parametrize(
    "name", ["-x.mp4", "$(touch pwned).mp4", "sp ace ünï 名.mp4", "http:evil.mp4"]
)
def test_hostile_names_are_plain_paths(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = mf.mp4(tmp_path / "source.mp4", 1.0)
    target = work / name
    os.rename(path, target)
    cwd = os.getcwd()
    os.chdir(work)  # a shell would create `pwned` here; ffprobe as an argument list never does
    try:
        info = probe(name)
    finally:
        os.chdir(cwd)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert sorted(os.listdir(work)) == [name]


@pytest.mark.parametrize("container", ["webm", "mkv"])
def test_audio_ending_before_the_picture_is_not_truncation(tmp_path: Path, container: str) -> None:
    """Matroska states no per-stream duration but tags each stream with one: an audio track
    that ends at 1.5 s under 3 s of picture is whole, not a truncated file."""
    path = tmp_path / f"short-audio.{container}"
    codecs = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus")
    mf.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=3",
              "-f", "lavfi", "-i", "sine=frequency=440:duration=1.5:sample_rate=48000",
              *codecs, path)  # fmt: skip
    for info in (probe(str(path)), probe_ffprobe(str(path))):
        assert info.audio is not None and info.audio.duration_s == pytest.approx(1.5, abs=0.05)
        assert info.video is not None and info.video.duration_s == pytest.approx(3.0, abs=0.05)
    info = probe(str(path))
    decoded = list(SpanDecoder(16000, 5.0, 160, DecodeConfig()).decode(
        str(path), info, [Span(0.0, 1.0), Span(1.0, 2.0), Span(2.0, 3.0)]))  # fmt: skip
    assert [d.span.start_s for d in decoded] == [0.0, 1.0, 2.0]  # every span, no error raised
    assert decoded[0].audio is not None and decoded[0].audio.shape[0] == 16000
    assert decoded[2].frames is not None and decoded[2].frames.shape[0] == 5


def test_clock_durations_parse() -> None:
    assert parse_clock_s("00:00:03.644000000") == pytest.approx(3.644)
    assert parse_clock_s("01:02:03.5") == pytest.approx(3723.5)
    assert parse_clock_s("3.5") is None and parse_clock_s("aa:bb:cc") is None
