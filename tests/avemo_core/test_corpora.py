"""What every corpus recipe shares: the speaker split, header durations against ffprobe, the
manifest's columns as `parse_manifest` reads them, and what is skipped or refused."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from avemo_core.config import ConfigError
from avemo_core.corpora import RECIPES, CorpusError, PrepareConfig, prepare
from avemo_core.corpora.common import MEDIA_SUFFIXES, one_hot, speaker_split
from avemo_core.corpora.durations import duration_s, durations, header_duration_s
from avemo_core.corpora.manifest import COLUMNS, metadata_path
from avemo_core.labels import EMOTIONS
from avemo_core.media.clips import parse_manifest
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import probe
from pipelines.extract.sources import MEDIA_EXTENSIONS
from tests.avemo_core import corpus_layouts
from tests.avemo_core.corpus_layouts import Copier, tone_wav
from tests.pipelines.media_factory import av_file, ffmpeg, mp4


def test_every_recipe_suffix_is_one_extract_lists() -> None:
    assert MEDIA_SUFFIXES <= MEDIA_EXTENSIONS


@pytest.mark.parametrize("n", [3, 4, 5, 10, 24, 91])
def test_speaker_split_is_disjoint_complete_and_never_leaves_a_split_empty(n: int) -> None:
    speakers = [f"s{i}" for i in range(n)]
    split = speaker_split(speakers, "corpus", 0.1, 0.1)
    assert set(split) == set(speakers)
    sizes = {s: sum(1 for v in split.values() if v == s) for s in ("train", "valid", "test")}
    assert all(size >= 1 for size in sizes.values()), sizes
    assert sizes["valid"] == max(1, round(n * 0.1)) and sizes["test"] == max(1, round(n * 0.1))


def test_speaker_split_does_not_depend_on_order_and_follows_its_salt() -> None:
    speakers = [str(1001 + i) for i in range(91)]
    shuffled = speakers[:]
    random.Random(3).shuffle(shuffled)
    first = speaker_split(speakers, "cremad", 0.1, 0.1)
    assert speaker_split(shuffled + speakers[:5], "cremad", 0.1, 0.1) == first
    assert speaker_split(speakers, "other", 0.1, 0.1) != first
    assert sorted(first.values()).count("test") == 9


def test_speaker_split_with_fewer_than_three_speakers_trains_on_all() -> None:
    assert speaker_split(["a", "b"], "x", 0.2, 0.2) == {"a": "train", "b": "train"}
    with pytest.raises(ValueError, match="< 1"):
        speaker_split(["a", "b", "c"], "x", 0.5, 0.5)


def test_one_hot_marks_missing_categories_unlabelled_not_absent() -> None:
    assert one_hot("anger", 2.0, ("surprise",)) == (0.0, 0.0, 2.0, 0.0, 0.0, None)
    assert one_hot(None, 1.0) == (0.0,) * len(EMOTIONS)
    with pytest.raises(ValueError):
        one_hot("calm", 1.0)


def test_header_durations_match_ffprobe(tmp_path: Path) -> None:
    files = {
        "wav": tone_wav(tmp_path / "a.wav", 1.25, 22050),
        "flac": tmp_path / "a.flac",
        "mp4": mp4(tmp_path / "a.mp4", 1.5, size="64x48"),
        "m4a": av_file(tmp_path / "a.m4a", 0.9, video=False),
        "flv": av_file(tmp_path / "a.flv", 0.8, size="64x48", video_codec=("-c:v", "flv1")),
    }
    ffmpeg("-i", files["wav"], files["flac"])
    for kind, path in files.items():
        from_header = header_duration_s(path)
        assert from_header is not None, f"{kind}: header not read"
        assert from_header == pytest.approx(probe(str(path)).duration_s, abs=0.03), kind


def test_containers_without_a_header_reader_and_broken_files_go_to_ffprobe(tmp_path: Path) -> None:
    mkv = av_file(tmp_path / "a.mkv", 0.8, size="64x48")
    assert header_duration_s(mkv) is None
    assert duration_s(mkv) == pytest.approx(probe(str(mkv)).duration_s)
    flv_without_metadata = tmp_path / "b.flv"
    flv_without_metadata.write_bytes(
        b"FLV\x01\x05\x00\x00\x00\x09" + bytes(4) + b"\x09" + bytes(30)
    )
    assert header_duration_s(flv_without_metadata) is None
    garbage = tmp_path / "03-01-01-01-01-01-01.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    lengths = durations([mkv, garbage, empty], workers=2)
    assert isinstance(lengths[0], float)
    assert isinstance(lengths[1], MediaError) and isinstance(lengths[2], MediaError)
    assert lengths[2].kind == "empty_file"


@pytest.fixture(scope="module")
def emodb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    corpus_layouts.emodb(root, Copier(tmp_path_factory.mktemp("cache")))
    return root


def test_manifest_inside_the_corpus_has_relative_uris_that_parse_back(
    emodb_dir: Path, tmp_path: Path
) -> None:
    manifest = emodb_dir / "emodb.csv"
    summary = prepare(PrepareConfig("emodb"), emodb_dir, manifest)
    text = manifest.read_text()
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert all(row["uri"].startswith("wav/") for row in rows)
    segments = parse_manifest(text, str(manifest.parent))
    assert len(segments) == len(rows) == 70 == sum(summary.per_split.values())
    assert {s.uri for s in segments} == {str(p) for p in (emodb_dir / "wav").iterdir()}
    assert all(s.start_s == 0 and s.end_s == pytest.approx(0.6) for s in segments)
    assert all(s.intensities[EMOTIONS.index("surprise")] is None for s in segments)
    assert summary.metadata == metadata_path(manifest) == emodb_dir / "emodb.meta.json"


def test_manifest_outside_the_corpus_has_absolute_uris(emodb_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "out" / "emodb.csv"
    prepare(PrepareConfig("emodb"), emodb_dir, manifest)
    segments = parse_manifest(manifest.read_text(), "/somewhere/else")
    assert all(Path(s.uri).is_file() and s.uri.startswith(str(emodb_dir)) for s in segments)


def test_unreadable_files_are_reported_and_skipped(tmp_path: Path) -> None:
    corpus_layouts.emodb(tmp_path / "corpus", Copier(tmp_path / "cache"))
    (tmp_path / "corpus" / "wav" / "03a02Wb.wav").write_bytes(b"not audio at all")
    summary = prepare(PrepareConfig("emodb"), tmp_path / "corpus", tmp_path / "m.csv")
    assert sum(summary.per_split.values()) == 70
    assert summary.skipped["unreadable"]["count"] == 1
    assert summary.skipped["unreadable"]["first"][0].startswith("wav/03a02Wb.wav: probe")
    meta = json.loads(metadata_path(tmp_path / "m.csv").read_text())
    assert meta["skipped"]["unreadable"]["count"] == 1


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_folder_that_is_not_the_corpus_is_refused_by_name(name: str, tmp_path: Path) -> None:
    tone_wav(tmp_path / "corpus" / "holiday" / "beach.wav")
    with pytest.raises(CorpusError, match="no .* found under") as err:
        prepare(PrepareConfig(name), tmp_path / "corpus", tmp_path / "m.csv")
    if name != "meld":
        assert "holiday/beach.wav" in str(err.value)
    assert not (tmp_path / "m.csv").exists()


def test_config_refuses_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown corpus"):
        PrepareConfig("timit")
    with pytest.raises(ConfigError, match="fixed split"):
        PrepareConfig("ravdess", valid_fraction=0.2)
    with pytest.raises(ConfigError, match="< 1"):
        PrepareConfig("cremad", valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        PrepareConfig("emodb", test_fraction=0.0)
    with pytest.raises(CorpusError, match="not found"):
        prepare(PrepareConfig("emodb"), tmp_path / "nowhere", tmp_path / "m.csv")
    with pytest.raises(CorpusError, match="is a folder"):
        prepare(PrepareConfig("emodb"), tmp_path, tmp_path)


def test_rerun_writes_the_same_bytes(emodb_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "m.csv", tmp_path / "b" / "m.csv"
    prepare(PrepareConfig("emodb"), emodb_dir, first)
    prepare(PrepareConfig("emodb", workers=1), emodb_dir, second)
    assert first.read_bytes() == second.read_bytes()
    meta = [json.loads(metadata_path(p).read_text()) for p in (first, second)]
    assert meta[0]["counts"] == meta[1]["counts"] and meta[0]["split_rule"] == meta[1]["split_rule"]
