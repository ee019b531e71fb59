"""The MELD recipe on a generated MELD.Raw: the three CSVs, clip folders with ffmpeg-made MP4s,
missing clips reported, the official split kept and its shared speakers said."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from avemo_core.corpora import CorpusError, PrepareConfig, prepare
from avemo_core.corpora.manifest import metadata_path
from avemo_core.labels import EMOTIONS
from avemo_core.media.clips import parse_manifest
from tests.avemo_core import corpus_layouts
from tests.avemo_core.corpus_layouts import Copier


def _rows(manifest: Path) -> dict[str, dict[str, str]]:
    with manifest.open(newline="") as f:
        return {"/".join(Path(r["uri"]).parts[-2:]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def meld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("MELD.Raw")
    corpus_layouts.meld(
        root, Copier(tmp_path_factory.mktemp("cache")), missing=("test/dia2_utt3.mp4",)
    )
    manifest = root / "meld.csv"
    prepare(PrepareConfig("meld"), root, manifest)
    return manifest


def test_official_split_and_label_mapping(meld: Path) -> None:
    rows = _rows(meld)
    assert set(rows) == {
        "train_splits/dia0_utt0.mp4",
        "train_splits/dia0_utt1.mp4",
        "train_splits/dia1_utt0.mp4",
        "dev_splits_complete/dia0_utt0.mp4",
        "output_repeated_splits_test/dia0_utt0.mp4",
        "output_repeated_splits_test/dia0_utt1.mp4",
    }
    assert {k: r["split"] for k, r in rows.items() if k.startswith("dev")} == {
        "dev_splits_complete/dia0_utt0.mp4": "valid"
    }
    expected = {
        "train_splits/dia0_utt0.mp4": ("Chandler", "neutral", None),
        "train_splits/dia0_utt1.mp4": ("Monica", "joy", "happiness"),
        "train_splits/dia1_utt0.mp4": ("Ross", "surprise", "surprise"),
        "dev_splits_complete/dia0_utt0.mp4": ("Ross", "anger", "anger"),
        "output_repeated_splits_test/dia0_utt0.mp4": ("Rachel", "sadness", "sadness"),
        "output_repeated_splits_test/dia0_utt1.mp4": ("Joey", "disgust", "disgust"),
    }
    for key, (speaker, label, emotion) in expected.items():
        row = rows[key]
        assert (row["speaker"], row["label"]) == (speaker, label)
        assert {e: row[e] for e in EMOTIONS} == {e: "1" if e == emotion else "0" for e in EMOTIONS}


def test_missing_clips_and_stray_files_are_reported(meld: Path) -> None:
    meta = json.loads(metadata_path(meld).read_text())
    assert meta["skipped"]["missing"] == {
        "count": 1,
        "first": ["test: dia2_utt3.mp4 (test_sent_emo.csv line 4)"],
    }
    assert meta["skipped"]["unparsed"]["first"] == [
        "output_repeated_splits_test/final_videos_testdia0_utt0.mp4"
    ]
    assert meta["speaker_independent"] is False
    assert meta["counts"]["speakers_in_several_splits"] == ["Ross"]


def test_manifest_parses_although_clip_names_repeat_across_splits(meld: Path) -> None:
    segments = parse_manifest(meld.read_text(), str(meld.parent))
    assert len(segments) == 6
    assert all(Path(s.uri).is_file() and s.end_s == pytest.approx(0.6) for s in segments)


def test_nested_folders_and_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "data" / "MELD.Raw"
    corpus_layouts.meld(root / "nested", Copier(tmp_path / "cache"))
    table = root / "nested" / "dev_sent_emo.csv"
    table.write_text(table.read_text() + "9,Hm.,Ross,sarcasm,neutral,0,5,1,1,x,y\n")
    (root / "nested" / "test_sent_emo.csv").unlink()
    summary = prepare(PrepareConfig("meld"), tmp_path / "data", tmp_path / "m.csv")
    assert summary.per_split == {"train": 3, "valid": 1, "test": 0}
    assert summary.skipped["bad_row"]["first"] == ["dev_sent_emo.csv line 3: emotion 'sarcasm'"]
    assert summary.skipped["missing_label_file"]["first"] == ["test_sent_emo.csv"]


def test_label_files_without_meld_columns_or_clips_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train_sent_emo.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CorpusError, match="not a MELD label file"):
        prepare(PrepareConfig("meld"), tmp_path, tmp_path / "m.csv")
    corpus_layouts.meld(
        tmp_path / "only-csv",
        Copier(tmp_path / "cache"),
        missing=tuple(
            f"{split}/dia{d}_utt{u}.mp4"
            for split, (_, _, rows) in corpus_layouts.MELD_SPLITS.items()
            for d, u, _, _ in rows
        ),
    )
    with pytest.raises(CorpusError, match=r"no MELD clips \(dia\*_utt\*.mp4"):
        prepare(PrepareConfig("meld"), tmp_path / "only-csv", tmp_path / "m.csv")
