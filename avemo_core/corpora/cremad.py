"""CREMA-D (Cao et al. 2014, doi:10.1109/TAFFC.2014.2336244; ODbL): 91 actors, 12 sentences.

Layout: the repository's `AudioWAV/1001_DFA_ANG_XX.wav` (also `AudioMP3/`) and
`VideoFlash/1001_DFA_ANG_XX.flv`; any nesting and any audio or video extension is accepted. The
name is `SPEAKER_SENTENCE_EMOTION_LEVEL`: speaker 1001-1091, a three-letter sentence code (IEO,
TIE, ...), emotion (ANG, DIS, FEA, HAP, NEU, SAD), level (LO low, MD medium, HI high, XX
unspecified; only sentence IEO is graded). An audio and a video file of one utterance are two
clips; the same file in two encodings (AudioWAV and AudioMP3) is kept once, the WAV.

Labels: ANG -> anger, DIS -> disgust, FEA -> fear, HAP -> happiness, SAD -> sadness at intensity
1 (LO), 2 (MD), 3 (HI) or 1 (XX, ungraded); NEU has none of the six (all labelled 0). CREMA-D has
no surprise category: surprise is unlabelled (empty) for every clip, neither positive nor negative.
The labels are the emotions the actors were asked to portray, not the raters' perception.

Split: speaker-independent by `common.speaker_split` over the actors (default 80/10/10 of the 91
actors: 73 / 9 / 9), the same for the audio and the video files.
"""

from __future__ import annotations

import re
from pathlib import Path

from avemo_core.corpora.common import (
    UNGRADED,
    Scan,
    Utterance,
    one_hot,
    scan_media_names,
)

NAME = "cremad"
DEFAULT_FRACTIONS = (0.1, 0.1)  # valid, test shares of the speakers
_PATTERN = re.compile(r"(1\d{3})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)")
LABELS: dict[str, str | None] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happiness",
    "NEU": None,
    "SAD": "sadness",
}
LEVELS = {"LO": 1.0, "MD": 2.0, "HI": 3.0, "XX": UNGRADED}
UNLABELLED = ("surprise",)
_VIDEO_SUFFIXES = frozenset({"flv", "mp4", "m4v", "mov", "mkv", "avi", "webm"})


def parse(path: Path) -> Utterance | None:
    """The utterance a CREMA-D file name describes, or None when the name is not one."""
    match = _PATTERN.fullmatch(path.name.rsplit(".", 1)[0])
    if match is None or not 1001 <= int(match[1]) <= 1091:
        return None
    speaker, _, code, level = match.groups()
    kind = "video" if path.suffix.lstrip(".").lower() in _VIDEO_SUFFIXES else "audio"
    return Utterance(
        path=path,
        key=f"{match[0]}/{kind}",
        speaker=speaker,
        label=code,
        intensities=one_hot(LABELS[code], LEVELS[level], UNLABELLED),
    )


def scan(corpus_dir: Path) -> Scan:
    return scan_media_names(corpus_dir, parse, "CREMA-D files (1001_DFA_ANG_XX.wav)")


def metadata() -> dict[str, object]:
    return {
        "labels": {code: {"emotion": e} for code, e in LABELS.items()},
        "intensity": {"LO": 1.0, "MD": 2.0, "HI": 3.0, "XX (unspecified)": UNGRADED},
        "unlabelled_emotions": list(UNLABELLED),
        "speaker_independent": True,
    }
