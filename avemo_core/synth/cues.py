"""Emotion -> cue parameters: how each labelled emotion shows in one speaker's voice and face.

A segment's intensities x (CMU-MOSEI scale, 0..3) become u = x / 3, and every cue is

    cue = speaker baseline + expressiveness * (WEIGHTS[cue] . u) + noise

so cues add up when several emotions co-occur, several emotions move the same cue (no cue alone
names an emotion), and speakers differ both in their baselines and in how much they show. Now and
then a segment is "poker-faced" or "flat-voiced" (its expressiveness in that modality drops to a
quarter), so the other modality has to carry it.

Cue table (weights per emotion, for u = 1; a dash: the emotion leaves that cue alone):

| cue (modality)           | happiness | sadness | anger | fear | disgust | surprise |
|--------------------------|-----------|---------|-------|------|---------|----------|
| pitch, semitones (A)     | +2.5      | -2.5    | +1.0  | +3.5 | -       | +3.0     |
| pitch range, st (A)      | +2.5      | -1.2    | +1.0  | -    | -       | +3.0     |
| rising glide, st (A)     | -         | -       | -     | -    | -       | +5.0     |
| syllable rate, octaves(A)| +0.15     | -0.55   | +0.40 | +0.45| -       | -        |
| loudness, dB (A)         | +2.0      | -5.0    | +7.0  | -1.0 | -       | +3.0     |
| spectral tilt (A, -=bright)| -0.3    | +0.5    | -0.7  | -    | -       | -        |
| breathiness (A)          | -         | +0.15   | -     | +0.35| -       | -        |
| tremolo depth, st (A)    | -         | -       | -     | +1.2 | -       | -        |
| smile (V)                | +0.9      | -0.6    | -0.25 | -    | -0.2    | -        |
| mouth opening (V)        | +0.25     | -       | +0.3  | -    | -       | +0.7     |
| brow tilt, +=inner up (V)| -         | +0.8    | -0.9  | -    | -0.3    | -        |
| brow raise (V)           | -         | -       | -0.3  | -    | -0.2    | +0.9     |
| eye opening (V)          | -         | -0.25   | -0.2  | -    | -0.45   | +0.6     |
| nose wrinkle, lip raise(V)| -        | -       | -     | -    | +0.9    | -        |
| mouth asymmetry (V)      | -         | -       | -     | -    | +0.6    | -        |

So fear is cued in the audio only and disgust in the video only; the other four show in both, with
noise drawn independently per modality, so neither modality alone reaches what both reach together.
One faint link remains on purpose: the mouth moves with the voice's syllables (lip sync), so speech
tempo shows in the video too, though at 5 sampled frames per second the 3-8 Hz syllable rhythm is
mostly aliased away. Measured on 400 clips (seed 1, 64 test clips), a per-emotion logistic
regression on crude features (log-mel statistics; mean and spread of a 32x32 face crop) reaches a
mean AUC of 0.70 from audio, 0.71 from video and 0.79 from both; fear from video and disgust from
audio stay near chance (0.57, 0.52).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Cue name -> weight per emotion, in avemo_core.labels.EMOTIONS order
# (happiness, sadness, anger, fear, disgust, surprise).
AUDIO_WEIGHTS: dict[str, tuple[float, ...]] = {
    "pitch_st": (2.5, -2.5, 1.0, 3.5, 0.0, 3.0),
    "range_st": (2.5, -1.2, 1.0, 0.0, 0.0, 3.0),
    "glide_st": (0.0, 0.0, 0.0, 0.0, 0.0, 5.0),
    "rate_oct": (0.15, -0.55, 0.40, 0.45, 0.0, 0.0),
    "level_db": (2.0, -5.0, 7.0, -1.0, 0.0, 3.0),
    "tilt": (-0.3, 0.5, -0.7, 0.0, 0.0, 0.0),
    "breath": (0.0, 0.15, 0.0, 0.35, 0.0, 0.0),
    "tremolo_st": (0.0, 0.0, 0.0, 1.2, 0.0, 0.0),
}
FACE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "smile": (0.9, -0.6, -0.25, 0.0, -0.2, 0.0),
    "mouth_open": (0.25, 0.0, 0.3, 0.0, 0.0, 0.7),
    "brow_tilt": (0.0, 0.8, -0.9, 0.0, -0.3, 0.0),
    "brow_raise": (0.0, 0.0, -0.3, 0.0, -0.2, 0.9),
    "eye_open": (0.0, -0.25, -0.2, 0.0, -0.45, 0.6),
    "wrinkle": (0.0, 0.0, 0.0, 0.0, 0.9, 0.0),
    "asym": (0.0, 0.0, 0.0, 0.0, 0.6, 0.0),
}
# Per-segment noise (standard deviation) on each cue, in the cue's unit.
AUDIO_NOISE: dict[str, float] = {
    "pitch_st": 1.2,
    "range_st": 0.6,
    "glide_st": 0.8,
    "rate_oct": 0.1,
    "level_db": 1.5,
    "tilt": 0.15,
    "breath": 0.04,
    "tremolo_st": 0.1,
}
FACE_NOISE: dict[str, float] = {
    "smile": 0.12,
    "mouth_open": 0.06,
    "brow_tilt": 0.12,
    "brow_raise": 0.12,
    "eye_open": 0.1,
    "wrinkle": 0.08,
    "asym": 0.1,
}
# Chance that a segment shows (almost) nothing in one modality: its expressiveness there drops.
MUTED_SHARE = 0.12
MUTED_GAIN = 0.25


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic person: what stays fixed across all of their media."""

    speaker_id: int
    f0_hz: float  # pitch baseline
    formant_scale: float  # vocal-tract length: multiplies every formant frequency
    rate_syll_s: float  # syllables per second when neutral
    level_db: float  # speech level (microphone distance) relative to the reference level
    tilt: float  # spectral tilt when neutral: harmonic k has amplitude k ** -tilt
    breath: float  # share of aspiration noise in the voice when neutral
    noise_db: float  # room noise level relative to the reference speech level
    audio_gain: float  # how strongly this voice shows emotion (multiplies the audio weights)
    face_gain: float  # how strongly this face shows emotion (multiplies the face weights)
    face_cx: float  # face centre x, share of the frame width
    face_cy: float  # face centre y, share of the frame height
    face_scale: float  # face height, share of the frame height
    skin_bgr: tuple[int, int, int]  # skin colour
    hair_bgr: tuple[int, int, int]  # hair and brow colour
    shirt_bgr: tuple[int, int, int]  # clothing colour
    background_bgr: tuple[int, int, int]  # wall colour
    disgust_side: int  # +1 or -1: which mouth corner lifts in disgust


@dataclasses.dataclass(frozen=True)
class AudioCues:
    """Voice parameters of one segment (absolute, speaker baseline included)."""

    f0_hz: float  # mean pitch
    range_st: float  # intonation spread between syllables, semitones
    glide_st: float  # pitch rise over each syllable, semitones (surprise)
    rate_syll_s: float  # syllables per second
    level_db: float  # speech level relative to the reference level
    tilt: float  # spectral tilt exponent (lower is brighter)
    breath: float  # share of aspiration noise, 0..1
    tremolo_st: float  # vibrato depth, semitones (fear)


@dataclasses.dataclass(frozen=True)
class FaceCues:
    """Expression of one segment, in face-relative units (0 is a neutral face)."""

    smile: float  # mouth-corner lift, -1 (frown) .. 1 (smile)
    mouth_open: float  # jaw drop when not speaking, 0 .. 1
    brow_tilt: float  # inner brow ends: + raised (sad), - lowered (angry)
    brow_raise: float  # whole brows up (+) or down (-)
    eye_open: float  # lid opening, 1 is neutral
    wrinkle: float  # nose wrinkle and upper-lip raise, 0 .. 1
    asym: float  # one mouth corner up relative to the other

    def as_array(self) -> np.ndarray:
        return np.array(dataclasses.astuple(self), dtype=np.float64)


SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (189, 214, 241),
    (150, 190, 226),
    (120, 165, 205),
    (90, 130, 175),
    (60, 95, 140),
    (45, 70, 105),
)
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25),
    (30, 45, 70),
    (40, 70, 110),
    (90, 130, 170),
    (120, 120, 125),
)


def sample_speaker(speaker_id: int, rng: np.random.Generator) -> Speaker:
    """A new person: a low or high voice; a face near the frame centre, at a decent size."""
    high = bool(rng.random() < 0.5)
    return Speaker(
        speaker_id=speaker_id,
        f0_hz=float(rng.uniform(175.0, 240.0) if high else rng.uniform(95.0, 140.0)),
        formant_scale=float(rng.uniform(1.05, 1.18) if high else rng.uniform(0.9, 1.02)),
        rate_syll_s=float(rng.uniform(3.5, 5.5)),
        level_db=float(rng.uniform(-4.0, 4.0)),
        tilt=float(rng.uniform(1.1, 1.7)),
        breath=float(rng.uniform(0.02, 0.12)),
        noise_db=float(rng.uniform(-38.0, -22.0)),
        audio_gain=float(rng.uniform(0.6, 1.2)),
        face_gain=float(rng.uniform(0.6, 1.2)),
        face_cx=float(rng.uniform(0.42, 0.58)),
        face_cy=float(rng.uniform(0.42, 0.52)),
        face_scale=float(rng.uniform(0.55, 0.72)),
        skin_bgr=_jitter_colour(SKIN_TONES[rng.integers(len(SKIN_TONES))], rng, 12),
        hair_bgr=_jitter_colour(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], rng, 10),
        shirt_bgr=tuple(int(c) for c in rng.integers(30, 226, size=3)),
        background_bgr=tuple(int(c) for c in rng.integers(40, 216, size=3)),
        disgust_side=int(rng.choice((-1, 1))),
    )


def _jitter_colour(
    colour: tuple[int, int, int], rng: np.random.Generator, spread: int
) -> tuple[int, int, int]:
    shifted = np.asarray(colour) + rng.integers(-spread, spread + 1, size=3)
    return tuple(int(c) for c in np.clip(shifted, 0, 255))


def _cue_values(
    weights: dict[str, tuple[float, ...]],
    noise: dict[str, float],
    intensities: np.ndarray,
    gain: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    """gain * (W . u) + noise for each cue; one muted draw per call (per segment and modality)."""
    u = np.clip(np.asarray(intensities, dtype=np.float64), 0.0, 3.0) / 3.0  # (E,)
    if rng.random() < MUTED_SHARE:
        gain *= MUTED_GAIN
    return {
        name: float(gain * np.dot(w, u) + rng.normal(0.0, noise[name]))
        for name, w in weights.items()
    }


def audio_cues(
    intensities: np.ndarray, speaker: Speaker, rng: np.random.Generator, cue_gain: float = 1.0
) -> AudioCues:
    """The voice of `speaker` in one segment with these emotion intensities (EMOTIONS order);
    `cue_gain` scales every emotion's effect (SynthConfig.cue_gain)."""
    v = _cue_values(AUDIO_WEIGHTS, AUDIO_NOISE, intensities, speaker.audio_gain * cue_gain, rng)
    return AudioCues(
        f0_hz=float(speaker.f0_hz * 2.0 ** (v["pitch_st"] / 12.0)),
        range_st=float(max(0.3, 2.0 + v["range_st"])),
        glide_st=float(v["glide_st"]),
        rate_syll_s=float(speaker.rate_syll_s * 2.0 ** v["rate_oct"]),
        level_db=float(speaker.level_db + v["level_db"]),
        tilt=float(np.clip(speaker.tilt + v["tilt"], 0.5, 2.6)),
        breath=float(np.clip(speaker.breath + v["breath"], 0.0, 0.8)),
        tremolo_st=float(abs(v["tremolo_st"])),
    )


def face_cues(
    intensities: np.ndarray, speaker: Speaker, rng: np.random.Generator, cue_gain: float = 1.0
) -> FaceCues:
    """The face of `speaker` in one segment with these emotion intensities (EMOTIONS order);
    `cue_gain` scales every emotion's effect (SynthConfig.cue_gain)."""
    v = _cue_values(FACE_WEIGHTS, FACE_NOISE, intensities, speaker.face_gain * cue_gain, rng)
    return FaceCues(
        smile=float(np.clip(v["smile"], -1.0, 1.0)),
        mouth_open=float(np.clip(0.08 + v["mouth_open"], 0.0, 1.0)),
        brow_tilt=float(np.clip(v["brow_tilt"], -1.2, 1.2)),
        brow_raise=float(np.clip(v["brow_raise"], -1.0, 1.2)),
        eye_open=float(np.clip(1.0 + v["eye_open"], 0.25, 1.8)),
        wrinkle=float(np.clip(v["wrinkle"], 0.0, 1.0)),
        asym=float(np.clip(v["asym"] * speaker.disgust_side, -1.0, 1.0)),
    )


NEUTRAL_FACE = FaceCues(
    smile=0.0, mouth_open=0.08, brow_tilt=0.0, brow_raise=0.0, eye_open=1.0, wrinkle=0.0, asym=0.0
)
