"""The RAVDESS recipe on the real speech files in ../shared/data (skipped when absent) and on a
generated copy of the download's layout (speech, song and audio-video sets in Actor_NN folders)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from avemo_core.corpora import PrepareConfig, prepare
from avemo_core.corpora.manifest import metadata_path
from avemo_core.labels import EMOTIONS
from avemo_core.media.clips import parse_manifest
from avemo_core.media.probe import probe_ffprobe
from tests.avemo_core import corpus_layouts
from tests.avemo_core.corpus_layouts import RAVDESS_DATA, Copier


def _real(folder: Path = RAVDESS_DATA) -> Path:
    if not folder.is_dir():
        pytest.skip(f"real RAVDESS files not found at {folder.resolve()}")
    return folder


def _rows(manifest: Path) -> dict[str, dict[str, str]]:
    with manifest.open(newline="") as f:
        return {Path(row["uri"]).name: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = tmp_path_factory.mktemp("ravdess") / "ravdess.csv"
    prepare(PrepareConfig("ravdess"), _real(), manifest)
    return manifest


def test_real_speech_set_counts_and_actor_split(real: Path) -> None:
    rows = _rows(real)
    assert len(rows) == 1440
    assert Counter(r["split"] for r in rows.values()) == {"train": 960, "valid": 240, "test": 240}
    for row in rows.values():
        actor = int(row["speaker"])
        assert row["split"] == ("train" if actor <= 16 else "valid" if actor <= 20 else "test")
    meta = json.loads(metadata_path(real).read_text())
    assert meta["counts"]["speakers_per_split"] == {"train": 16, "valid": 4, "test": 4}
    assert meta["counts"]["speakers_in_several_splits"] == []
    assert meta["counts"]["per_label"] == {"neutral": 96} | {
        name: 192 for name in ("angry", "calm", "disgust", "fearful", "happy", "sad", "surprised")
    }
    test = meta["counts"]["per_emotion"]["test"]
    assert all(test[e] == {"positive": 32, "negative": 208, "unlabelled": 0} for e in EMOTIONS)
    assert meta["skipped"] == {}


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        ("03-01-05-02-01-01-01.flac", "train", {"anger": "2"}),  # angry, strong, actor 01
        ("03-01-03-01-02-02-18.flac", "valid", {"happiness": "1"}),  # happy, normal, actor 18
        ("03-01-08-02-02-01-24.flac", "test", {"surprise": "2"}),
        ("03-01-06-01-01-01-21.flac", "test", {"fear": "1"}),
        ("03-01-02-02-01-01-07.flac", "train", {}),  # calm: none of the six, all labelled 0
        ("03-01-01-01-01-01-20.flac", "valid", {}),  # neutral
    ],
)
def test_real_label_mapping(real: Path, name: str, split: str, expected: dict[str, str]) -> None:
    row = _rows(real)[name]
    assert row["split"] == split
    assert {e: row[e] for e in EMOTIONS} == {e: expected.get(e, "0") for e in EMOTIONS}


def test_real_manifest_parses_with_every_file_whole(real: Path) -> None:
    segments = parse_manifest(real.read_text(), str(real.parent))
    assert len(segments) == 1440
    assert {Path(s.uri).name for s in segments} == {p.name for p in RAVDESS_DATA.glob("*.flac")}
    lengths = [s.end_s for s in segments]
    assert all(s.start_s == 0 for s in segments)
    assert 2.5 < sum(lengths) / len(lengths) < 4.5  # about 3.5 s per file (README)


def test_download_layout_with_song_and_video_sets(tmp_path: Path) -> None:
    root = tmp_path / "RAVDESS"
    corpus_layouts.ravdess(root, Copier(tmp_path / "cache"))
    (root / "Audio_Speech_Actors_01-24" / "Actor_01" / "03-01-09-01-01-01-01.wav").write_bytes(b"")
    (root / "README.txt").write_text("not media")
    manifest = tmp_path / "m.csv"
    summary = prepare(PrepareConfig("ravdess"), root, manifest)
    rows = _rows(manifest)
    assert len(rows) == 24 * 8 + 3
    assert summary.per_split == {"train": 16 * 8, "valid": 4 * 8 + 1, "test": 4 * 8 + 2}
    assert rows["03-02-03-01-02-01-17.wav"]["split"] == "valid"  # song, actor 17
    assert rows["01-01-06-01-01-02-21.mp4"]["fear"] == "1"  # audio-video
    assert rows["02-01-06-01-01-02-21.mp4"]["fear"] == "1"  # video-only
    assert summary.skipped == {
        "unparsed": {
            "count": 1,
            "first": ["Audio_Speech_Actors_01-24/Actor_01/03-01-09-01-01-01-01.wav"],
        }
    }


def test_one_recording_in_two_encodings_is_kept_once_lossless(tmp_path: Path) -> None:
    media = Copier(tmp_path / "cache")
    media.put(tmp_path / "corpus" / "wav" / "03-01-04-01-01-01-02.wav")
    media.put(tmp_path / "corpus" / "mp4" / "03-01-04-01-01-01-02.mp4")
    media.put(tmp_path / "corpus" / "03-01-04-01-01-01-03.mp4")
    summary = prepare(PrepareConfig("ravdess"), tmp_path / "corpus", tmp_path / "m.csv")
    assert set(_rows(tmp_path / "m.csv")) == {
        "03-01-04-01-01-01-02.wav",
        "03-01-04-01-01-01-03.mp4",
    }
    assert summary.skipped["duplicate"] == {"count": 1, "first": ["mp4/03-01-04-01-01-01-02.mp4"]}


def test_real_audio_video_files_with_lengths_from_their_headers(tmp_path: Path) -> None:
    folder = _real(RAVDESS_DATA.parent / "ravdess-av-actor05")
    summary = prepare(PrepareConfig("ravdess"), folder, tmp_path / "av.csv")
    assert summary.per_split == {"train": 28, "valid": 0, "test": 0}  # actor 05 only
    rows = _rows(tmp_path / "av.csv")
    assert Counter(name[:2] for name in rows) == {"01": 14, "02": 14}
    for name in sorted(rows)[::9]:  # a few: ffprobe is the slow path the header read avoids
        expected = probe_ffprobe(str(folder / name)).duration_s
        assert float(rows[name]["end_s"]) == pytest.approx(expected, abs=1e-3)
