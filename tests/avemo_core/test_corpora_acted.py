"""The CREMA-D and EmoDB recipes on generated folders in their real layouts: label mapping,
unlabelled surprise, intensities, and speaker-independent splits from the speaker hash."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from avemo_core.corpora import PrepareConfig, prepare
from avemo_core.corpora.manifest import metadata_path
from avemo_core.labels import EMOTIONS
from tests.avemo_core import corpus_layouts
from tests.avemo_core.corpus_layouts import EMODB_SPEAKERS, Copier


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def _speakers_by_split(rows: list[dict[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["split"], set()).add(row["speaker"])
    return out


@pytest.fixture(scope="module")
def cremad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("CREMA-D")
    corpus_layouts.cremad(root, Copier(tmp_path_factory.mktemp("cache")))
    (root / "AudioWAV" / "1001_DFA_XYZ_XX.wav").write_bytes(b"")  # unknown emotion code
    (root / "AudioWAV" / "0999_DFA_ANG_XX.wav").write_bytes(b"")  # speaker out of range
    manifest = tmp_path_factory.mktemp("out") / "cremad.csv"
    prepare(PrepareConfig("cremad"), root, manifest)
    return manifest


def test_cremad_speaker_split_73_9_9_and_disjoint(cremad: Path) -> None:
    rows = _rows(cremad)
    assert len(rows) == 91 * 6 + 2
    by_split = _speakers_by_split(rows)
    assert {s: len(v) for s, v in by_split.items()} == {"train": 73, "valid": 9, "test": 9}
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert not by_split["valid"] & by_split["test"]
    video = [r for r in rows if r["uri"].endswith(".flv")]
    audio_split = {r["speaker"]: r["split"] for r in rows if r["uri"].endswith(".wav")}
    assert len(video) == 2 and all(audio_split[r["speaker"]] == r["split"] for r in video)
    meta = json.loads(metadata_path(cremad).read_text())
    assert "sha256" in meta["split_rule"] and meta["split_fractions"] == {"valid": 0.1, "test": 0.1}
    assert meta["counts"]["speakers_in_several_splits"] == []
    assert meta["skipped"]["unparsed"]["count"] == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1001_DFA_ANG_XX.wav", {"anger": "1"}),  # unspecified level: ungraded 1
        ("1001_IEO_HAP_HI.wav", {"happiness": "3"}),
        ("1001_IEO_SAD_LO.wav", {"sadness": "1"}),
        ("1002_IEO_HAP_MD.flv", {"happiness": "2"}),
        ("1001_IEO_NEU_XX.wav", {}),
        ("1050_DFA_DIS_XX.wav", {"disgust": "1"}),
        ("1091_DFA_FEA_XX.wav", {"fear": "1"}),
    ],
)
def test_cremad_labels_leave_surprise_unlabelled(
    cremad: Path, name: str, expected: dict[str, str]
) -> None:
    (row,) = [r for r in _rows(cremad) if r["uri"].endswith("/" + name)]
    want = {e: expected.get(e, "0") for e in EMOTIONS} | {"surprise": ""}
    assert {e: row[e] for e in EMOTIONS} == want


def test_cremad_mp3_copy_is_a_duplicate_of_the_wav(tmp_path: Path) -> None:
    media = Copier(tmp_path / "cache")
    corpus_layouts.cremad(tmp_path / "c", media, speakers=range(1001, 1004))
    (tmp_path / "c" / "AudioMP3").mkdir()
    (tmp_path / "c" / "AudioMP3" / "1001_DFA_ANG_XX.mp3").write_bytes(b"ID3")
    summary = prepare(PrepareConfig("cremad"), tmp_path / "c", tmp_path / "m.csv")
    assert summary.skipped["duplicate"]["first"] == ["AudioMP3/1001_DFA_ANG_XX.mp3"]
    assert summary.speakers_per_split == {"train": 1, "valid": 1, "test": 1}


@pytest.fixture(scope="module")
def emodb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    corpus_layouts.emodb(root, Copier(tmp_path_factory.mktemp("cache")))
    manifest = root / "emodb.csv"
    prepare(PrepareConfig("emodb"), root, manifest)
    return manifest


def test_emodb_split_6_2_2_and_labels(emodb: Path) -> None:
    rows = _rows(emodb)
    assert len(rows) == 70
    by_split = _speakers_by_split(rows)
    assert {s: len(v) for s, v in by_split.items()} == {"train": 6, "valid": 2, "test": 2}
    assert set().union(*by_split.values()) == set(EMODB_SPEAKERS)
    assert sum(len(v) for v in by_split.values()) == 10  # no speaker in two splits
    by_name = {Path(r["uri"]).name: r for r in rows}
    for letter, emotion in {"W": "anger", "E": "disgust", "A": "fear", "F": "happiness"}.items():
        row = by_name[f"03a01{letter}a.wav"]
        assert {e: row[e] for e in EMOTIONS} == {
            e: "1" if e == emotion else "0" for e in EMOTIONS[:5]
        } | {"surprise": ""}
    for letter in "LN":  # boredom and neutral: labelled absent for the five, surprise unlabelled
        row = by_name[f"08a01{letter}a.wav"]
        assert [row[e] for e in EMOTIONS] == ["0"] * 5 + [""]
    assert by_name["16a01Ta.wav"]["sadness"] == "1" and by_name["16a01La.wav"]["label"] == "boredom"
    meta = json.loads(metadata_path(emodb).read_text())
    assert meta["unlabelled_emotions"] == ["surprise"]
    assert meta["counts"]["per_emotion"]["train"]["surprise"] == {
        "positive": 0,
        "negative": 0,
        "unlabelled": 42,
    }
    assert Counter(meta["counts"]["per_label"].values()) == {10: 7}


def test_emodb_fractions_can_be_changed(tmp_path: Path, emodb: Path) -> None:
    summary = prepare(
        PrepareConfig("emodb", valid_fraction=0.1, test_fraction=0.3),
        emodb.parent,
        tmp_path / "m.csv",
    )
    assert summary.speakers_per_split == {"train": 6, "valid": 1, "test": 3}
