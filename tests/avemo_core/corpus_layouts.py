"""Small corpora in each corpus's real layout, made of tiny real media (numpy WAV, ffmpeg MP4/FLV).

One file of each kind is encoded once per folder and copied under every name the layout needs, so
a corpus of a hundred files costs a few ffmpeg runs.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from tests.pipelines.media_factory import av_file, mp4, wav

RAVDESS_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ravdess-speech"


def tone_wav(path: Path, seconds: float = 0.6, rate_hz: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return wav(path, (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16), rate_hz)


class Copier:
    """Writes each kind of media once (in `cache`), then copies it to every path asked for."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def _source(self, suffix: str) -> Path:
        source = self.cache / f"source.{suffix}"
        if not source.exists():
            if suffix == "wav":
                tone_wav(source)
            elif suffix == "mp4":
                mp4(source, 0.6, size="64x48")
            elif suffix == "flv":
                av_file(source, 0.6, size="64x48", video_codec=("-c:v", "flv1"))
            else:
                raise ValueError(suffix)
        return source

    def put(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._source(path.suffix.lstrip(".")), path)
        return path


def ravdess(root: Path, media: Copier, actors: range = range(1, 25)) -> list[Path]:
    """Speech WAV (all 8 emotions) in Actor_NN folders, plus song WAV and AV/video-only MP4s."""
    made: list[Path] = []
    for actor in actors:
        folder = root / "Audio_Speech_Actors_01-24" / f"Actor_{actor:02d}"
        for emotion in range(1, 9):
            level = 2 if emotion > 1 else 1
            made.append(
                media.put(folder / f"03-01-{emotion:02d}-{level:02d}-01-01-{actor:02d}.wav")
            )
    made.append(media.put(root / "Audio_Song_Actors_01-24/Actor_17/03-02-03-01-02-01-17.wav"))
    video = root / "Video_Speech_Actor_21" / "Actor_21"
    made.append(media.put(video / "01-01-06-01-01-02-21.mp4"))
    made.append(media.put(video / "02-01-06-01-01-02-21.mp4"))
    return made


def cremad(root: Path, media: Copier, speakers: range = range(1001, 1092)) -> list[Path]:
    """AudioWAV/ for every speaker (all six categories), VideoFlash/ .flv for the first two."""
    made: list[Path] = []
    for speaker in speakers:
        for code, level in (("ANG", "XX"), ("DIS", "XX"), ("FEA", "XX")):
            made.append(media.put(root / "AudioWAV" / f"{speaker}_DFA_{code}_{level}.wav"))
        for code, level in (("HAP", "HI"), ("NEU", "XX"), ("SAD", "LO")):
            made.append(media.put(root / "AudioWAV" / f"{speaker}_IEO_{code}_{level}.wav"))
    for speaker in list(speakers)[:2]:
        made.append(media.put(root / "VideoFlash" / f"{speaker}_IEO_HAP_MD.flv"))
    return made


EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def emodb(root: Path, media: Copier) -> list[Path]:
    """wav/ with every speaker in all seven categories, and a label folder that is not media."""
    made = [
        media.put(root / "wav" / f"{speaker}a01{letter}a.wav")
        for speaker in EMODB_SPEAKERS
        for letter in "WLEAFTN"
    ]
    (root / "lablaut").mkdir(parents=True, exist_ok=True)
    (root / "lablaut" / "03a01Fa.lab").write_text("0.1 a\n")
    return made


MELD_COLUMNS = [
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
]  # fmt: skip
# MELD split -> (its CSV, its clip folder, rows: (dialogue, utterance, speaker, emotion))
MELD_SPLITS = {
    "train": (
        "train_sent_emo.csv",
        "train_splits",
        [(0, 0, "Chandler", "neutral"), (0, 1, "Monica", "joy"), (1, 0, "Ross", "surprise")],
    ),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete", [(0, 0, "Ross", "anger")]),
    "test": (
        "test_sent_emo.csv",
        "output_repeated_splits_test",
        [(0, 0, "Rachel", "sadness"), (0, 1, "Joey", "disgust"), (2, 3, "Phoebe", "fear")],
    ),
}


def meld(root: Path, media: Copier, missing: tuple[str, ...] = ()) -> None:
    """MELD.Raw: the three CSVs and a clip per row, except the `split/diaD_uttU.mp4` in missing."""
    root.mkdir(parents=True, exist_ok=True)
    for split, (table, folder, rows) in MELD_SPLITS.items():
        with (root / table).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(MELD_COLUMNS)
            for number, (dia, utt, speaker, emotion) in enumerate(rows, start=1):
                text = "Oh, you\u2019re so \u201cfunny\u201d."  # quotes and commas as in MELD
                writer.writerow(
                    [number, text, speaker, emotion, "neutral", dia, utt, 1, 1, "00:00:01,000"]
                    + ["00:00:02,500"]
                )
                clip = f"dia{dia}_utt{utt}.mp4"
                if f"{split}/{clip}" not in missing:
                    media.put(root / folder / clip)
    media.put(root / "output_repeated_splits_test" / "final_videos_testdia0_utt0.mp4")
