"""What a synthetic corpus holds before any media is made: speakers, splits, files and their labels.

Splits are by speaker (no person appears in two splits). Labels are drawn per split in blocks of
seven clips: each of the six emotions leads one clip of the block (intensity 1..3) and one clip is
neutral, so a split of six or more clips has positives of every emotion; every other emotion joins
a clip with `secondary_share` chance (intensity 1/3..5/3), except that happiness and sadness never
co-occur. Intensities are multiples of 1/3, as averaged CMU-MOSEI ratings are. Every time in a plan
is a multiple of TIME_STEP_S, so segment bounds fall on whole video frames and audio samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avemo_core.labels import EMOTIONS, SPLITS
from avemo_core.synth.config import SynthConfig
from avemo_core.synth.cues import Speaker, sample_speaker

TIME_STEP_S = 0.2  # grid of every segment bound
LEAD_S = 0.2  # media time before the first segment and after the last
GAP_STEPS = (2, 3, 4)  # pause between segments, in TIME_STEP_S (0.4..0.8 s)
EXCLUSIVE = {("happiness", "sadness"), ("sadness", "happiness")}


@dataclasses.dataclass(frozen=True)
class SegmentPlan:
    start_s: float  # from the media start
    end_s: float
    intensities: tuple[float, ...]  # one per emotion in EMOTIONS order, 0..3 (0: absent)


@dataclasses.dataclass(frozen=True)
class FilePlan:
    index: int  # position in the corpus; seeds this file's own random stream
    name: str  # path relative to the corpus folder, e.g. media/spk03_0007.mp4
    speaker: Speaker
    split: str | None  # train / valid / test; None for unlabelled media
    has_audio: bool
    has_video: bool
    duration_s: float
    segments: tuple[SegmentPlan, ...]


def _labels(n: int, secondary_share: float, rng: np.random.Generator) -> list[tuple[float, ...]]:
    """n label vectors: blocks of (six emotions leading in random order, one neutral)."""
    leads: list[int | None] = []
    while len(leads) < n:
        leads.extend([*(int(e) for e in rng.permutation(len(EMOTIONS))), None])
    out = []
    for lead in leads[:n]:
        x = np.zeros(len(EMOTIONS))
        if lead is not None:
            x[lead] = rng.integers(3, 10) / 3.0  # 1, 4/3, ..., 3
            for e, name in enumerate(EMOTIONS):
                joins = e != lead and rng.random() < secondary_share
                present = [EMOTIONS[f] for f in np.flatnonzero(x)]
                if joins and not any((other, name) in EXCLUSIVE for other in present):
                    x[e] = rng.integers(1, 6) / 3.0  # 1/3 .. 5/3
        out.append(tuple(round(float(v), 4) for v in x))
    rng.shuffle(out)
    return out


def _chunk(n: int, most: int, rng: np.random.Generator) -> list[int]:
    """Split n segments into files of mostly 2..most segments each."""
    sizes = []
    while n > 0:
        size = min(n, int(rng.integers(min(2, most), most + 1)))
        sizes.append(size)
        n -= size
    return sizes


def _segments(
    labels: list[tuple[float, ...]], config: SynthConfig, rng: np.random.Generator
) -> tuple[tuple[SegmentPlan, ...], float]:
    """Lay labelled segments end to end with short pauses; returns them and the media length."""
    lo = round(config.segment_min_s / TIME_STEP_S)
    hi = max(lo, round(config.segment_max_s / TIME_STEP_S))
    steps = round(LEAD_S / TIME_STEP_S)
    segments = []
    for i, x in enumerate(labels):
        if i:
            steps += int(rng.choice(GAP_STEPS))
        length = int(rng.integers(lo, hi + 1))
        start, end = round(steps * TIME_STEP_S, 3), round((steps + length) * TIME_STEP_S, 3)
        segments.append(SegmentPlan(start, end, x))
        steps += length
    return tuple(segments), round((steps + round(LEAD_S / TIME_STEP_S)) * TIME_STEP_S, 3)


def _modalities(n_files: int, config: SynthConfig, rng: np.random.Generator) -> list[str]:
    """Kind per file: av (mp4) for most, a few video (mp4 without audio), a few wav or m4a."""
    n_vo = round(config.video_only_share * n_files)
    n_ao = round(config.audio_only_share * n_files)
    if n_files >= 3:  # a corpus of three files or more always holds one of each kind
        n_vo = max(n_vo, 1 if config.video_only_share > 0 else 0)
        n_ao = max(n_ao, 1 if config.audio_only_share > 0 else 0)
    kinds = ["av"] * n_files
    picked = rng.choice(n_files, size=min(n_files, n_vo + n_ao), replace=False)  # random order
    for j, i in enumerate(picked):
        kinds[int(i)] = "video" if j < n_vo else ("wav", "m4a")[(j - n_vo) % 2]
    return kinds


def _file(
    index: int,
    kind: str,
    speaker: Speaker,
    split: str | None,
    prefix: str,
    segments: tuple[SegmentPlan, ...],
    duration_s: float,
) -> FilePlan:
    ext = {"av": "mp4", "video": "mp4"}.get(kind, kind)
    return FilePlan(
        index=index,
        name=f"{prefix}spk{speaker.speaker_id:02d}_{index:04d}.{ext}",
        speaker=speaker,
        split=split,
        has_audio=kind != "video",
        has_video=kind in ("av", "video"),
        duration_s=duration_s,
        segments=segments,
    )


def plan_corpus(config: SynthConfig) -> list[FilePlan]:
    """The labelled corpus: speaker-disjoint splits, `config.clips` segments, ~2.5 per file."""
    rng = np.random.default_rng([config.seed, 0])
    n_speakers = max(3, config.clips // config.clips_per_speaker)
    speakers = [sample_speaker(i, rng) for i in range(n_speakers)]
    order = [int(i) for i in rng.permutation(n_speakers)]
    n_test = max(1, round(config.test_share * n_speakers))
    n_valid = max(1, round(config.valid_share * n_speakers))
    split_of = {s: "test" for s in order[:n_test]}
    split_of |= {s: "valid" for s in order[n_test : n_test + n_valid]}
    split_of |= {s: "train" for s in order[n_test + n_valid :]}
    # Clips per speaker: as even as possible; the remainder goes to speakers in shuffled order.
    count = {s: config.clips // n_speakers for s in range(n_speakers)}
    for s in order[::-1][: config.clips % n_speakers]:
        count[s] += 1
    per_speaker: dict[int, list[tuple[float, ...]]] = {}
    for split in SPLITS:
        members = [s for s in range(n_speakers) if split_of[s] == split]
        labels = _labels(sum(count[s] for s in members), config.secondary_share, rng)
        for s in members:
            per_speaker[s], labels = labels[: count[s]], labels[count[s] :]
    layouts = []  # (speaker, segments, duration) per file, in speaker order
    for s in range(n_speakers):
        labels = per_speaker[s]
        for size in _chunk(len(labels), config.segments_per_file_max, rng):
            layouts.append((s, *_segments(labels[:size], config, rng)))
            labels = labels[size:]
    kinds = _modalities(len(layouts), config, rng)
    return [
        _file(i, kinds[i], speakers[s], split_of[s], "media/", segments, duration)
        for i, (s, segments, duration) in enumerate(layouts)
    ]


def plan_media(count: int, config: SynthConfig) -> list[FilePlan]:
    """Unlabelled media of new speakers: file 0 audio-only (wav), 1 video-only, the rest both."""
    rng = np.random.default_rng([config.seed, 2])
    files = []
    for i in range(count):
        speaker = sample_speaker(1000 + i, rng)
        labels = _labels(
            int(rng.integers(1, config.segments_per_file_max + 1)), config.secondary_share, rng
        )
        kind = {0: "wav", 1: "video"}.get(i, "av")
        segments, duration = _segments(labels, config, rng)
        files.append(_file(i, kind, speaker, None, "", segments, duration))
    return files
