"""RAVDESS (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391; CC BY-NC-SA 4.0).

Layout: the speech, song and audio-video downloads unpack to folders like
`Audio_Speech_Actors_01-24/Actor_01/03-01-05-02-01-01-01.wav`, `Audio_Song_Actors_01-24/...` and
`Video_Speech_Actor_01/Actor_01/01-01-...mp4`; any nesting and any audio or video extension is
accepted (the re-encoded copy in ../shared/data/ravdess-speech is one flat folder of .flac). The
name is `MM-VV-EE-II-SS-RR-AA`: modality (01 audio-video, 02 video-only, 03 audio-only), vocal
channel (01 speech, 02 song), emotion (below), intensity (01 normal, 02 strong; neutral has only
01), statement (01/02), repetition (01/02), actor (01-24; odd male, even female).

Labels: happy -> happiness, sad -> sadness, angry -> anger, fearful -> fear, disgust -> disgust,
surprised -> surprise, at intensity 1 (normal) or 2 (strong); neutral and calm carry none of the
six (all six 0: informative negatives). Every emotion is annotated, so none is unlabelled.

Split (speaker-independent, fixed): actors 01-16 train, 17-20 valid, 21-24 test, as in
../shared/data/README.md, whatever the set (speech, song, audio-video), so one actor never lands in
two splits even when the sets are prepared together.
"""

from __future__ import annotations

import re
from pathlib import Path

from avemo_core.corpora.common import (
    Scan,
    Utterance,
    one_hot,
    scan_media_names,
)

NAME = "ravdess"
_PATTERN = re.compile(r"(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})")
# RAVDESS emotion code -> (its name, avemo emotion or None)
LABELS: dict[str, tuple[str, str | None]] = {
    "01": ("neutral", None),
    "02": ("calm", None),
    "03": ("happy", "happiness"),
    "04": ("sad", "sadness"),
    "05": ("angry", "anger"),
    "06": ("fearful", "fear"),
    "07": ("disgust", "disgust"),
    "08": ("surprised", "surprise"),
}
INTENSITIES = {"01": 1.0, "02": 2.0}  # normal, strong
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
CHANNELS = {"01": "speech", "02": "song"}
SPLIT_RULE = "actors 01-16 train, 17-20 valid, 21-24 test (fixed, speaker-independent)"


def split_of(actor: int) -> str:
    return "train" if actor <= 16 else "valid" if actor <= 20 else "test"


def parse(path: Path) -> Utterance | None:
    """The utterance a RAVDESS file name describes, or None when the name is not one."""
    match = _PATTERN.fullmatch(path.name.rsplit(".", 1)[0])
    if match is None or not 1 <= int(match[7]) <= 24:
        return None
    _, _, code, level, _, _, actor = match.groups()
    name, emotion = LABELS[code]
    return Utterance(
        path=path,
        key=match[0],
        speaker=actor,
        label=name,
        intensities=one_hot(emotion, INTENSITIES[level]),
        split=split_of(int(actor)),
    )


def scan(corpus_dir: Path) -> Scan:
    return scan_media_names(corpus_dir, parse, "RAVDESS files (MM-VV-EE-II-SS-RR-AA.wav)")


def metadata() -> dict[str, object]:
    return {
        "labels": {code: {"name": n, "emotion": e} for code, (n, e) in LABELS.items()},
        "intensity": {"01 (normal)": 1.0, "02 (strong)": 2.0},
        "unlabelled_emotions": [],
        "split_rule": SPLIT_RULE,
        "speaker_independent": True,
        "fields": {"modality": MODALITIES, "vocal_channel": CHANNELS},
    }
