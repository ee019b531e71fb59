"""Log-mel features against librosa (an independent implementation) on speech-like signals.

librosa frames `n_fft` samples with the `win_length` window centred inside them; padding the signal
by (n_fft - win_length) / 2 zeros on each side makes its frame t cover exactly our samples
[t * hop, t * hop + window), so both compute the same configuration frame by frame.
"""

from __future__ import annotations

import time

import librosa
import numpy as np
import pytest

from avemo_core.config import ConfigError
from avemo_core.features.audio import (
    AudioFeatureConfig,
    LogMelExtractor,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)

SR = 16000
# Max |ours - librosa| in natural-log units. float16 storage rounds values of magnitude < 16 by at
# most 2^-8 (0.0039), which is what we measure; float32 FFT error is far below that. A symmetric
# instead of periodic Hann window already gives 0.7, an HTK/Slaney or fmin mix-up several units.
LIBROSA_ATOL = 0.01
LIBROSA_MEAN_ATOL = 0.002

# (F1, F2, F3) formant centres in Hz of a few vowels, adult speaker
VOWELS_HZ = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240)}


def speech_like(seed: int, duration_s: float = 2.0) -> np.ndarray:
    """Voiced vowels: gliding pitch, moving formants, a fricative, a pause, noise."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SR)
    t = np.arange(n) / SR
    # pitch glides between two random targets (a falling-rising contour), 90..260 Hz
    f0_lo, f0_hi = sorted(rng.uniform(90, 260, size=2))
    f0 = f0_lo + (f0_hi - f0_lo) * (0.5 + 0.5 * np.cos(2 * np.pi * t / duration_s))  # (N,)
    # formants move linearly from one vowel to another
    names = rng.choice(list(VOWELS_HZ), size=2, replace=False)
    start, end = np.array(VOWELS_HZ[names[0]]), np.array(VOWELS_HZ[names[1]])
    ramp = np.clip(t / duration_s, 0, 1)[:, None]
    formants = start[None, :] * (1 - ramp) + end[None, :] * ramp  # (N, 3)
    bandwidths = np.array([80.0, 110.0, 160.0])
    phase0 = 2 * np.pi * np.cumsum(f0) / SR  # (N,)
    voiced = np.zeros(n)
    for k in range(1, int(7600 / f0_lo)):
        fk = k * f0  # (N,)
        gain = np.sum(1.0 / (1.0 + ((fk[:, None] - formants) / bandwidths) ** 2), axis=1)  # (N,)
        voiced += np.where(fk < 7900, gain / k, 0.0) * np.sin(k * phase0)
    # syllable envelope: two voiced stretches separated by a pause
    envelope = np.clip(np.sin(np.pi * t / (duration_s / 2)) ** 2, 0, 1)
    envelope[(t > 0.45 * duration_s) & (t < 0.55 * duration_s)] = 0.0
    signal = 0.3 * voiced / np.abs(voiced).max() * envelope
    # fricative: high-passed noise burst in the pause ("s"-like)
    burst = rng.standard_normal(n) * ((t > 0.47 * duration_s) & (t < 0.53 * duration_s))
    burst = np.diff(burst, prepend=0.0)  # crude high-pass
    signal += 0.05 * burst + 10 ** (-40 / 20) * 0.3 * rng.standard_normal(n)  # -40 dB floor
    return np.clip(signal, -1, 1).astype(np.float32)


def librosa_log_mel(samples: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    pad = (config.fft_size - config.window_samples) // 2
    power = librosa.feature.melspectrogram(
        y=np.pad(samples.astype(np.float64), pad),
        sr=config.sample_rate_hz,
        n_fft=config.fft_size,
        hop_length=config.hop_samples,
        win_length=config.window_samples,
        window="hann",
        center=False,
        power=2.0,
        n_mels=config.num_mel_bins,
        fmin=config.mel_low_hz,
        fmax=config.mel_high_hz,
        htk=True,
        norm=None,
    )  # (M, T)
    return np.log(np.maximum(power, config.log_floor_power)).T  # (T, M)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_librosa_on_speech_like_signals(seed: int) -> None:
    config = AudioFeatureConfig()
    samples = speech_like(seed)
    ours = LogMelExtractor(config)(samples)
    ref = librosa_log_mel(samples, config)
    assert ours.shape == ref.shape == (198, 80)
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.max() < LIBROSA_ATOL, f"max diff {diff.max():.4f}"
    assert diff.mean() < LIBROSA_MEAN_ATOL, f"mean diff {diff.mean():.5f}"
    # the signal really is speech-like: strong dynamics over time and frequency
    assert ref.max() - ref.min() > 10.0


def test_matches_librosa_on_odd_length_and_other_config() -> None:
    config = AudioFeatureConfig(num_mel_bins=40, mel_low_hz=0.0, mel_high_hz=7600.0, chunk_frames=5)
    samples = speech_like(7, duration_s=0.7)[:11_113]
    ours = LogMelExtractor(config)(samples)
    ref = librosa_log_mel(samples, config)
    assert ours.shape == ref.shape == (1 + (11_113 - 400) // 160, 40)
    assert np.abs(ours.astype(np.float64) - ref).max() < LIBROSA_ATOL


@pytest.mark.parametrize(
    ("num_samples", "frames"), [(0, 0), (1, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)]
)
def test_frame_count_shape_and_dtype(num_samples: int, frames: int) -> None:
    extractor = LogMelExtractor()
    assert extractor.num_frames(num_samples) == frames
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, num_samples).astype(np.float32)
    out = extractor(noise)
    assert out.shape == (frames, 80)
    assert out.dtype == np.float16


def test_silence_is_finite_and_at_floor() -> None:
    config = AudioFeatureConfig()
    out = LogMelExtractor(config)(np.zeros(SR, dtype=np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.astype(np.float64), np.log(config.log_floor_power), atol=0.02)
    # a tiny click after silence stays finite too, and rises above the floor
    quiet = np.zeros(SR, dtype=np.float32)
    quiet[8000] = 1e-4
    out = LogMelExtractor(config)(quiet)
    assert np.isfinite(out).all()
    assert out.max() > np.log(config.log_floor_power) + 1.0


def test_tone_peaks_in_the_filter_centred_on_it() -> None:
    config = AudioFeatureConfig()
    centres_hz = mel_to_hz(
        np.linspace(hz_to_mel(config.mel_low_hz), hz_to_mel(config.mel_high_hz), 82)
    )[1:-1]
    for tone_hz in (300.0, 1000.0, 3500.0):
        t = np.arange(SR) / SR
        out = LogMelExtractor(config)((0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32))
        peak_bins = out.astype(np.float32).argmax(axis=1)
        nearest = int(np.argmin(np.abs(centres_hz - tone_hz)))
        assert np.all(np.abs(peak_bins - nearest) <= 1), (tone_hz, np.unique(peak_bins), nearest)


def test_filterbank_has_no_empty_filters_and_no_gaps() -> None:
    bank = mel_filterbank(AudioFeatureConfig())
    assert bank.shape == (257, 80)
    assert (bank > 0).sum(axis=0).min() >= 1  # every filter sees at least one FFT bin
    assert bank[0].max() == 0.0  # the DC bin sits below mel_low_hz
    assert bank[1:-1].sum(axis=1).min() > 0.0  # every bin between 20 Hz and 8 kHz is covered
    assert bank.max() <= 1.0  # triangles peak at 1, no area normalisation


def test_config_round_trip_and_validation() -> None:
    config = AudioFeatureConfig(num_mel_bins=64, hop_s=0.02)
    assert AudioFeatureConfig.from_dict(config.to_dict()) == config
    assert config.hop_samples == 320 and config.window_samples == 400
    with pytest.raises(ConfigError):
        AudioFeatureConfig(mel_high_hz=9000.0)
    with pytest.raises(ConfigError):
        AudioFeatureConfig(fft_size=256)
    with pytest.raises(ConfigError):
        AudioFeatureConfig.from_dict({"num_mel_bin": 80})


def test_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match="mono"):
        LogMelExtractor()(np.zeros((2, 16000), dtype=np.float32))


def test_a_minute_of_audio_is_fast() -> None:
    """Extraction runs on hours of media: a minute of audio must take well under a CPU second.

    CPU time of this process, not wall time, so other jobs on a shared machine do not fail it.
    """
    extractor = LogMelExtractor()
    samples = np.tile(speech_like(3), 30)  # 60 s
    start = time.process_time()
    out = extractor(samples)
    elapsed = time.process_time() - start
    assert out.shape == (extractor.num_frames(samples.shape[0]), 80)
    assert elapsed < 1.0, f"{elapsed:.2f} CPU s for 60 s of audio"
