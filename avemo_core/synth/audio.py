"""Voiced-sound synthesis: syllables of a harmonic source shaped by vowel formants, plus room noise.

Each syllable is a sum of harmonics of a moving pitch (intonation, glide, tremolo) whose amplitudes
follow a spectral tilt and the formants of one of five vowels, scaled by the speaker's vocal-tract
length; aspiration noise is mixed in by breathiness, and half the syllables open with a short
fricative burst. There is no language, only prosody and timbre: the emotion cues of `cues.py`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avemo_core.synth.cues import AudioCues, Speaker

# F1, F2, F3 of five vowels (a, e, i, o, u) of an adult male tract; Speaker.formant_scale scales.
VOWEL_FORMANTS_HZ: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
)
FORMANT_BANDWIDTHS_HZ = np.array([90.0, 110.0, 170.0])
FORMANT_GAINS = np.array([1.0, 0.6, 0.3])
# RMS of speech at level 0 dB (about -26 dBFS): loud anger (+11 dB) still stays below full scale.
REFERENCE_RMS = 0.05
ATTACK_S = 0.025  # syllable fade-in
RELEASE_S = 0.05  # syllable fade-out
FRICATIVE_S = 0.04  # length of the noise burst that leads into a syllable


@dataclasses.dataclass(frozen=True)
class Syllable:
    start_s: float  # onset, seconds from the segment start
    dur_s: float  # voiced length
    vowel: int  # index into VOWEL_FORMANTS_HZ
    start_st: float  # pitch at onset, semitones relative to the segment pitch
    end_st: float  # pitch at the end, semitones relative to the segment pitch
    fricative: bool  # a noise burst (consonant) leads into the vowel


def plan_syllables(cues: AudioCues, duration_s: float, rng: np.random.Generator) -> list[Syllable]:
    """Syllable timing and intonation of one segment; the face's mouth follows the same plan."""
    period_s = 1.0 / cues.rate_syll_s
    syllables: list[Syllable] = []
    t = float(rng.uniform(0.02, 0.12))
    in_phrase = 0
    while t + 0.5 * period_s < duration_s - 0.05:
        dur = min(period_s * float(rng.uniform(0.55, 0.85)), duration_s - 0.05 - t)
        start_st = float(rng.normal(0.0, cues.range_st / 2.0)) - 0.3 * min(in_phrase, 6)
        end_st = start_st - 0.5 + cues.glide_st
        syllables.append(
            Syllable(
                t,
                dur,
                int(rng.integers(len(VOWEL_FORMANTS_HZ))),
                start_st,
                end_st,
                bool(rng.random() < 0.5),
            )
        )
        t += period_s * float(rng.uniform(0.9, 1.1))
        in_phrase += 1
        if rng.random() < 0.12:  # a breath pause ends the phrase
            t += float(rng.uniform(0.15, 0.3))
            in_phrase = 0
    return syllables


def _formant_envelope(freq_hz: np.ndarray, formants_hz: np.ndarray) -> np.ndarray:
    """Sum of three resonance peaks (Lorentzian magnitude) at the given frequencies."""
    offset = (freq_hz[:, None] - formants_hz[None, :]) / (FORMANT_BANDWIDTHS_HZ[None, :] / 2.0)
    return (FORMANT_GAINS[None, :] / (1.0 + offset**2)).sum(axis=1)  # (K, 3) -> (K,)


def _fade(n: int, sample_rate_hz: int) -> np.ndarray:
    """Raised-cosine attack and release over n samples."""
    env = np.ones(n)
    attack = min(n // 2, round(ATTACK_S * sample_rate_hz))
    release = min(n - attack, round(RELEASE_S * sample_rate_hz))
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(attack, 1))
    env[n - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / max(release, 1))
    return env


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-9)


def synth_voice(
    syllables: list[Syllable],
    cues: AudioCues,
    speaker: Speaker,
    duration_s: float,
    sample_rate_hz: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The voice of one segment: float64 samples (N,), silent between syllables."""
    sr = sample_rate_hz
    out = np.zeros(round(duration_s * sr))
    tremolo_hz = float(rng.uniform(5.0, 7.5))
    tremolo_phase = float(rng.uniform(0.0, 2 * np.pi))
    for syl in syllables:
        i0 = round(syl.start_s * sr)
        n = min(round(syl.dur_s * sr), len(out) - i0)
        if n < 32:
            continue
        t = np.arange(n) / sr
        semitones = (
            syl.start_st
            + (syl.end_st - syl.start_st) * t / syl.dur_s
            + cues.tremolo_st * np.sin(2 * np.pi * tremolo_hz * (syl.start_s + t) + tremolo_phase)
        )
        f0 = cues.f0_hz * 2.0 ** (semitones / 12.0)  # (n,)
        phase = 2 * np.pi * np.cumsum(f0) / sr + float(rng.uniform(0.0, 2 * np.pi))
        k = np.arange(1, max(1, int(0.45 * sr / f0.max())) + 1, dtype=np.float64)  # (K,)
        formants = np.asarray(VOWEL_FORMANTS_HZ[syl.vowel]) * speaker.formant_scale
        amp = k**-cues.tilt * (0.05 + _formant_envelope(k * f0.mean(), formants))  # (K,)
        voiced = _unit_rms(amp @ np.sin(np.outer(k, phase)))  # (K,) @ (K, n) -> (n,)
        aspiration = _unit_rms(np.diff(rng.standard_normal(n + 1)))
        mix = (1.0 - cues.breath) * voiced + cues.breath * aspiration
        out[i0 : i0 + n] += mix * _fade(n, sr)
        if syl.fricative:
            nf = min(round(FRICATIVE_S * sr), i0)
            if nf > 8:
                burst = _unit_rms(np.diff(rng.standard_normal(nf + 1))) * np.hanning(nf)
                out[i0 - nf : i0] += 0.3 * burst
    return out * REFERENCE_RMS * 10.0 ** (cues.level_db / 20.0)


def room_noise(n: int, noise_db: float, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish background noise (1/sqrt(f) spectrum) at `noise_db` relative to the speech level."""
    spectrum = np.fft.rfft(rng.standard_normal(max(n, 2)))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    noise = _unit_rms(np.fft.irfft(spectrum, n=max(n, 2))[:n])
    return noise * REFERENCE_RMS * 10.0 ** (noise_db / 20.0)


def talk_envelope(syllables: list[Syllable], times_s: np.ndarray) -> np.ndarray:
    """How far the mouth is open for speech at each time, 0..1: one arch per syllable."""
    env = np.zeros(len(times_s))
    for syl in syllables:
        x = (times_s - syl.start_s) / syl.dur_s
        inside = (x >= 0.0) & (x <= 1.0)
        env[inside] = np.maximum(env[inside], np.sin(np.pi * x[inside]))
    return env


def to_pcm16(samples: np.ndarray) -> bytes:
    """Soft-limit to full scale and quantise: little-endian signed 16-bit PCM."""
    return (np.tanh(samples) * 32767.0).round().astype("<i2").tobytes()
