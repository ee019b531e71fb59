"""Clip planning and per-clip features on real media: schema-conformant rows, odd but valid files,
and faces found in talking-head footage built from a real photograph."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from avemo_core.data import decode_audio, decode_visual
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.labels import EMOTIONS
from avemo_core.media.clips import (
    ClipConfig,
    ClipExtractor,
    ManifestError,
    MediaStats,
    Segment,
    fixed_windows,
    parse_manifest,
    resolve_uri,
)
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import probe
from avemo_core.schema import clip_id_for, clip_schema, media_id_for
from tests.pipelines import media_factory as mf


@pytest.fixture(scope="module")
def extractor() -> ClipExtractor:
    return ClipExtractor(clip=ClipConfig(window_s=1.0))


def extract(
    extractor: ClipExtractor, path: Path, segments: list[Segment] | None = None
) -> list[dict]:
    rows = list(extractor.rows(str(path), str(path), probe(str(path)), segments))
    pa.Table.from_pylist(
        rows, schema=clip_schema(extractor.config_dict())
    )  # conforms to the contract
    return rows


def spans(windows: list[Segment]) -> list[tuple[float, float]]:
    return [(w.start_s, w.end_s) for w in windows]


def test_fixed_windows_cover_the_file() -> None:
    config = ClipConfig(window_s=10.0, min_clip_s=0.5)
    assert spans(fixed_windows("f", 25.0, config)) == [(0, 10), (10, 20), (20, 25)]
    assert spans(fixed_windows("f", 20.3, config)) == [(0, 10), (10, 20)]  # 0.3 s tail dropped
    assert spans(fixed_windows("f", 30.0, config)) == [(0, 10), (10, 20), (20, 30)]
    assert spans(fixed_windows("f", 0.3, config)) == [(0, 0.3)]  # shorter than a window: kept


def test_manifest_resolves_relative_uris_and_reads_labels() -> None:
    text = (
        "uri,start_s,end_s,split,happiness,sadness,anger,fear,disgust,surprise,speaker\n"
        "clips/a.mp4,0,2.5,train,1.5,0,0,,0,0.3,actor 07\n"
        "/abs/b.mp4,1,3,,,,,,,,\n"
        "s3://bkt/c.mp4,0,1,test,0,0,0,0,0,0, \n"
    )
    local = parse_manifest(text, "/data/corpus")
    assert [s.uri for s in local] == ["/data/corpus/clips/a.mp4", "/abs/b.mp4", "s3://bkt/c.mp4"]
    assert local[0].split == "train" and local[0].intensities == (1.5, 0.0, 0.0, None, 0.0, 0.3)
    assert local[1].split is None and local[1].intensities == (None,) * len(EMOTIONS)
    assert [s.speaker for s in local] == ["actor 07", None, None]  # blank: unknown
    remote = parse_manifest(text, "s3://bkt/corpus")
    assert remote[0].uri == "s3://bkt/corpus/clips/a.mp4"
    assert resolve_uri("../x.wav", "s3://bkt/corpus/sub") == "s3://bkt/corpus/x.wav"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("uri,start_s\na.mp4,0\n", "lacks column(s) ['end_s']"),
        ("uri,start_s,end_s\na.mp4,zero,1\n", "line 2: start_s='zero' is not a number"),
        ("uri,start_s,end_s\na.mp4,2,1\n", "line 2: need 0 <= start_s < end_s"),
        ("uri,start_s,end_s,split\na.mp4,0,1,dev\n", "split 'dev' is not one of"),
        ("uri,start_s,end_s\na.mp4,0,1\na.mp4,0.0,1.0\n", "line 3: same clip as line 2"),
        ("uri,start_s,end_s,anger\na.mp4,0,1,nan\n", "anger='nan' is not finite"),
    ],
)
def test_manifest_errors_name_the_line(text: str, words: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "/data")
    assert words in str(caught.value)


def test_rows_hold_decodable_features(extractor: ClipExtractor, tmp_path: Path) -> None:
    path = mf.talking_head_mp4(tmp_path / "av.mp4", 2.5)
    rows = extract(extractor, path)
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(0, 1), (1, 2), (2, 2.5)]
    uri = str(path)
    for row in rows:
        assert row["clip_id"] == clip_id_for(uri, row["start_s"], row["end_s"])
        assert row["media_id"] == media_id_for(uri) and row["source_uri"] == uri
        assert row["has_audio"] and row["has_visual"] and row["split"] is None
        audio = decode_audio(row["audio_features"], row["audio_frames"], row["audio_dims"])
        visual = decode_visual(
            row["visual_features"], row["visual_frames"], row["visual_height"], row["visual_width"]
        )
        seconds = row["end_s"] - row["start_s"]
        assert audio.shape == (extractor.logmel.num_frames(round(seconds * 16000)), 80)
        assert np.isfinite(audio.astype(np.float32)).all() and audio.astype(np.float32).std() > 0
        frames = math.ceil(row["end_s"] * 5) - math.ceil(row["start_s"] * 5)  # at k / 5 s in span
        assert visual.shape == (frames, 64, 64) and visual.std() > 0
        flags = np.frombuffer(row["visual_face_flags"], np.uint8)
        assert flags.shape == (frames,) and (flags > 0).all() and row["face_ratio"] == 1.0
        assert all(row[e] is None for e in EMOTIONS)


def test_manifest_segments_carry_split_labels_and_speaker(
    extractor: ClipExtractor, tmp_path: Path
) -> None:
    path = mf.mp4(tmp_path / "av.mp4", 3.0)
    intensities = (0.0, 2.0, 0.0, 0.0, 1.0, 0.0)
    segments = [
        Segment(str(path), 0.5, 2.0, "valid", intensities, "actor 07"),
        Segment(str(path), 1.0, 3.5, "train", intensities),  # runs past the end: features to 3 s
    ]
    rows = extract(extractor, path, segments)
    assert [(r["start_s"], r["end_s"], r["split"]) for r in rows] == [
        (0.5, 2.0, "valid"),
        (1.0, 3.5, "train"),
    ]
    assert [r["visual_frames"] for r in rows] == [8, 10]
    assert [r["sadness"] for r in rows] == [2.0, 2.0]
    assert [r["speaker"] for r in rows] == ["actor 07", None]


def test_segment_after_the_end_fails_the_file(extractor: ClipExtractor, tmp_path: Path) -> None:
    path = mf.mp4(tmp_path / "av.mp4", 1.0)
    with pytest.raises(MediaError) as caught:
        extract(extractor, path, [Segment(str(path), 5.0, 6.0)])
    assert (caught.value.stage, caught.value.kind) == ("probe", "segment_out_of_range")


ODD_MEDIA = {
    # name: (maker, has_audio, has_video, has_face, duration_s); testsrc2 video shows no face
    "audio.wav": (lambda p: mf.wav(p, np.zeros(24000, np.int16) + 1000), True, False, False, 1.5),
    "audio.m4a": (lambda p: mf.av_file(p, 1.5, video=False), True, False, False, 1.5),
    "video-only.mp4": (
        lambda p: mf.talking_head_mp4(p, 1.5, audio=False), False, True, True, 1.5
    ),
    "short.mp4": (lambda p: mf.mp4(p, 0.4), True, True, False, 0.4),
    "hd-5.1.mp4": (
        lambda p: mf.mp4(p, 0.5, size="1920x1080", rate=60, channels=6, audio_rate_hz=48000),
        True,
        True,
        False,
        0.5,
    ),
    "vp8-opus.webm": (
        lambda p: mf.av_file(
            p, 1.5, video_codec=("-c:v", "libvpx", "-b:v", "200k"),
            audio_codec=("-c:a", "libopus"), audio_rate_hz=48000,
        ),
        True,
        True,
        False,
        1.5,
    ),
    "mp3-8k.avi": (
        lambda p: mf.av_file(
            p, 1.5, video_codec=("-c:v", "mpeg4"), audio_codec=("-c:a", "libmp3lame"),
            audio_rate_hz=8000,
        ),
        True,
        True,
        False,
        1.5,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ODD_MEDIA))
def test_odd_but_valid_media(extractor: ClipExtractor, tmp_path: Path, name: str) -> None:
    make, has_audio, has_video, has_face, duration = ODD_MEDIA[name]
    path = make(tmp_path / name)
    rows = extract(extractor, path)
    assert rows[0]["start_s"] == 0.0 and rows[-1]["end_s"] == pytest.approx(duration, abs=0.25)
    for row in rows:
        seconds = row["end_s"] - row["start_s"]
        # no face in any frame: no visual input for the model, but the frames are kept, flagged
        assert (row["has_audio"], row["has_visual"]) == (has_audio, has_face)
        if has_audio:
            assert abs(row["audio_frames"] - seconds * 100) <= 8
        else:
            assert row["audio_frames"] == 0 and row["audio_features"] == b""
        flags = np.frombuffer(row["visual_face_flags"], np.uint8)
        if has_video:
            assert abs(row["visual_frames"] - seconds * 5) <= 1
            assert flags.shape == (row["visual_frames"],)
            assert flags.any() == has_face and row["face_ratio"] == float(np.mean(flags > 0))
            if not has_face:
                assert not decode_visual(row["visual_features"], row["visual_frames"], 64, 64).any()
        else:
            assert row["visual_frames"] == 0 and row["visual_features"] == b""
            assert flags.shape == (0,)


def test_no_face_and_no_audio_is_nothing_for_a_model(
    extractor: ClipExtractor, tmp_path: Path
) -> None:
    """A silent test pattern: no audio, no face frame; not written, counted as an empty clip."""
    path = mf.mp4(tmp_path / "pattern.mp4", 1.5, audio=False)
    stats = MediaStats()
    rows = list(extractor.rows(str(path), str(path), probe(str(path)), None, stats))
    assert rows == [] and stats.empty_clips == 2 and stats.clips == 0


def test_faces_found_in_talking_head_footage(tmp_path: Path) -> None:
    path = mf.talking_head_mp4(tmp_path / "talk.mp4", duration_s=4.0)
    stats = MediaStats()
    extractor = ClipExtractor(clip=ClipConfig(window_s=2.0), visual=VisualFeatureConfig(fps=5.0))
    rows = list(extractor.rows(str(path), str(path), probe(str(path)), None, stats))
    assert stats.visual_frames == 20
    assert stats.face_frames / stats.visual_frames >= 0.9
    assert all(r["face_ratio"] >= 0.9 for r in rows)


def test_faces_found_in_rotated_footage(tmp_path: Path) -> None:
    """Stored sideways with a display matrix turning it upright (as phones record): faces are found
    only if the rotation is honoured."""
    path = mf.talking_head_mp4(tmp_path / "talk.mp4", duration_s=2.0, sideways=True)
    assert probe(str(path)).video is not None
    extractor = ClipExtractor(clip=ClipConfig(window_s=2.0))
    rows = list(extractor.rows(str(path), str(path), probe(str(path)), None))
    assert rows[0]["face_ratio"] >= 0.9
