"""MELD (Poria et al., ACL 2019, arXiv:1810.02508): utterances of the TV series Friends.

Layout of MELD.Raw once its tarballs are unpacked: `train_sent_emo.csv`, `dev_sent_emo.csv`,
`test_sent_emo.csv` (columns Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
Utterance_ID, Season, Episode, StartTime, EndTime) and one folder of clips per split,
`train_splits/`, `dev_splits_complete/` and `output_repeated_splits_test/`, holding
`dia{Dialogue_ID}_utt{Utterance_ID}.mp4` (audio and video). Any nesting is accepted, and the folder
names `train`, `dev_splits`/`dev`, `test_splits`/`test` too; other names in those folders (the
test folder's `final_videos_test*.mp4`) are reported as unparsed. A CSV row whose clip is not there
is reported (`missing`) and skipped, as is a row with an unknown emotion (`bad_row`).

Labels: anger, disgust, fear, sadness, surprise as themselves, joy -> happiness, each ungraded
(intensity 1); neutral has none of the six (all labelled 0). Every emotion is annotated.

Split: MELD's own train / dev / test, as train / valid / test, so results compare with published
ones. It is NOT speaker-independent: the six main characters speak in all three splits (the
metadata lists the speakers that do). No speaker-independent split is offered: six speakers hold
most utterances, so any such split is one of a handful of lopsided ones rather than a benchmark.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

from avemo_core.corpora.common import (
    UNGRADED,
    CorpusError,
    Scan,
    Skipped,
    Utterance,
    media_files,
    one_hot,
)

NAME = "meld"
LABELS: dict[str, str | None] = {
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "joy": "happiness",
    "neutral": None,
    "sadness": "sadness",
    "surprise": "surprise",
}
# MELD split -> (its CSV, clip folder names in order of preference, avemo split)
SPLITS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "train": ("train_sent_emo.csv", ("train_splits", "train"), "train"),
    "dev": ("dev_sent_emo.csv", ("dev_splits_complete", "dev_splits", "dev"), "valid"),
    "test": ("test_sent_emo.csv", ("output_repeated_splits_test", "test_splits", "test"), "test"),
}
_CLIP = re.compile(r"dia(\d+)_utt(\d+)\.mp4", re.IGNORECASE)
_COLUMNS = ("Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
SPLIT_RULE = "MELD's official split: train -> train, dev -> valid, test -> test"


def _shallowest(corpus_dir: Path, name: str) -> Path | None:
    found = [p for p in corpus_dir.rglob(name) if p.is_file()]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


def _clips(files: Iterable[Path]) -> dict[str, dict[tuple[int, int], Path]]:
    """Folder name -> (dialogue, utterance) -> clip, for every `dia*_utt*.mp4`."""
    by_folder: dict[str, dict[tuple[int, int], Path]] = {}
    for path in files:
        match = _CLIP.fullmatch(path.name)
        if match is not None:
            key = (int(match[1]), int(match[2]))
            by_folder.setdefault(path.parent.name.lower(), {}).setdefault(key, path)
    return by_folder


def _rows(table: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, record) of a MELD CSV; CorpusError when it lacks MELD's columns."""
    # some utterance texts are mis-encoded; only ids, speaker and emotion are read
    text = table.read_bytes().decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusError(f"{table} is not a MELD label file: it lacks column(s) {missing}")
    return list(enumerate(reader, start=2))


def scan(corpus_dir: Path) -> Scan:
    skipped = Skipped()
    tables = {split: _shallowest(corpus_dir, spec[0]) for split, spec in SPLITS.items()}
    if not any(tables.values()):
        names = ", ".join(spec[0] for spec in SPLITS.values())
        raise CorpusError(f"no MELD label files ({names}) found under {corpus_dir}")
    files = media_files(corpus_dir)
    by_folder = _clips(files)
    utterances: list[Utterance] = []
    for split, (csv_name, folders, avemo_split) in SPLITS.items():
        table = tables[split]
        if table is None:
            skipped.add("missing_label_file", csv_name)
            continue
        clips: dict[tuple[int, int], Path] = {}
        for folder in reversed(folders):  # the preferred folder name wins
            clips.update(by_folder.get(folder, {}))
        seen: set[tuple[int, int]] = set()
        for line, record in _rows(table):
            where = f"{csv_name} line {line}"
            emotion = (record.get("Emotion") or "").strip().lower()
            try:
                key = (int(record["Dialogue_ID"]), int(record["Utterance_ID"]))
            except (TypeError, ValueError):
                skipped.add("bad_row", f"{where}: Dialogue_ID/Utterance_ID not integers")
                continue
            if emotion not in LABELS:
                skipped.add("bad_row", f"{where}: emotion {emotion!r}")
                continue
            clip = f"dia{key[0]}_utt{key[1]}.mp4"
            if key in seen:
                skipped.add("duplicate", f"{where}: {clip} listed again")
                continue
            seen.add(key)
            if key not in clips:
                skipped.add("missing", f"{split}: {clip} ({where})")
                continue
            utterances.append(
                Utterance(
                    path=clips[key],
                    key=f"{split}/{clip}",
                    speaker=(record.get("Speaker") or "").strip() or "unknown",
                    label=emotion,
                    intensities=one_hot(LABELS[emotion], UNGRADED),
                    split=avemo_split,
                )
            )
    for path in files:
        if _CLIP.fullmatch(path.name) is None:
            skipped.add("unparsed", str(path.relative_to(corpus_dir)))
    if not utterances:
        raise CorpusError(
            f"no MELD clips (dia*_utt*.mp4 in train_splits/, dev_splits_complete/, "
            f"output_repeated_splits_test/) for the rows of the label files under {corpus_dir}"
        )
    return Scan(sorted(utterances, key=lambda u: str(u.path)), skipped)


def metadata() -> dict[str, object]:
    return {
        "labels": {name: {"emotion": e} for name, e in LABELS.items()},
        "intensity": {"every label (ungraded)": UNGRADED},
        "unlabelled_emotions": [],
        "split_rule": SPLIT_RULE,
        "speaker_independent": False,
        "split_note": "MELD's official split shares speakers (the main characters) across splits",
    }
