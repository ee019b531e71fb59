"""Berlin EmoDB (Burkhardt et al., Interspeech 2005): 10 actors, 10 German sentences, 535 files.

Layout: the download's `wav/03a01Fa.wav` (beside `lablaut/`, `silb/` and other label folders,
which are not media and are ignored); any nesting and audio extension is accepted. The name is
speaker (2 digits: 03 08 09 10 11 12 13 14 15 16), text code (a01-a07, b01-b10), emotion letter
(German initial, below) and version letter (a, b, ...).

Labels: W (Wut) -> anger, E (Ekel) -> disgust, A (Angst) -> fear, F (Freude) -> happiness,
T (Trauer) -> sadness, each ungraded (intensity 1). N (neutral) and L (Langeweile, boredom) show
none of the six: all labelled 0. Boredom is kept, not dropped: an acted low-arousal state that is
not sadness is a useful negative, most of all for sadness. EmoDB has no surprise category:
surprise is unlabelled (empty) for every file.

Split: speaker-independent by `common.speaker_split` over the 10 speakers, default 60/20/20
(6 / 2 / 2 speakers): at 10% valid and test would hold one speaker each (about 50 files), too
few to tune thresholds or to judge a model by.
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

NAME = "emodb"
DEFAULT_FRACTIONS = (0.2, 0.2)  # valid, test shares of the speakers
_PATTERN = re.compile(r"(\d{2})([ab]\d{2})([WLEAFTN])([a-z])")
# EmoDB letter -> (its English name, avemo emotion or None)
LABELS: dict[str, tuple[str, str | None]] = {
    "W": ("anger", "anger"),
    "L": ("boredom", None),
    "E": ("disgust", "disgust"),
    "A": ("fear", "fear"),
    "F": ("happiness", "happiness"),
    "T": ("sadness", "sadness"),
    "N": ("neutral", None),
}
UNLABELLED = ("surprise",)


def parse(path: Path) -> Utterance | None:
    """The utterance an EmoDB file name describes, or None when the name is not one."""
    match = _PATTERN.fullmatch(path.name.rsplit(".", 1)[0])
    if match is None:
        return None
    speaker, _, letter, _ = match.groups()
    name, emotion = LABELS[letter]
    return Utterance(
        path=path,
        key=match[0],
        speaker=speaker,
        label=name,
        intensities=one_hot(emotion, UNGRADED, UNLABELLED),
    )


def scan(corpus_dir: Path) -> Scan:
    return scan_media_names(corpus_dir, parse, "EmoDB files (03a01Fa.wav)")


def metadata() -> dict[str, object]:
    return {
        "labels": {letter: {"name": n, "emotion": e} for letter, (n, e) in LABELS.items()},
        "intensity": {"every label (ungraded)": UNGRADED},
        "unlabelled_emotions": list(UNLABELLED),
        "speaker_independent": True,
    }
