"""Audio features: 80-dim log-mel filterbank of 16 kHz mono, 25 ms window, 10 ms hop, float16.

Conventions (fixed, so stored features stay comparable across runs):
- framing without centre padding: frame t covers samples [t * hop, t * hop + window), so
  T = 0 if N < window else 1 + (N - window) // hop, and a trailing partial frame is dropped;
- periodic Hann window of `window_s`, zero-padded on the right to `fft_size` points;
- power spectrum |FFT|^2 (no pre-emphasis, no dither, no DC removal);
- HTK mel scale (mel = 2595 * log10(1 + f / 700)) with triangular filters peaking at 1 and no area
  normalisation: the Kaldi / HTK filterbank convention used by speech front ends;
- natural log of the mel power, floored at `log_floor_power` so silence gives a finite value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avemo_core.config import FrozenConfig, require


@dataclasses.dataclass(frozen=True)
class AudioFeatureConfig(FrozenConfig):
    sample_rate_hz: int = 16000  # input is resampled to this rate (by ffmpeg) before features
    num_mel_bins: int = 80  # filterbank channels: the feature dimension
    window_s: float = 0.025  # analysis window length
    hop_s: float = 0.010  # frame shift
    fft_size: int = 512  # FFT points (samples); the window is zero-padded to this length
    mel_low_hz: float = 20.0  # lowest filter's lower edge (Kaldi default: keeps DC out)
    mel_high_hz: float = 8000.0  # upper edge of the highest mel filter, at most sample_rate_hz / 2
    log_floor_power: float = 1e-10  # mel power is clamped to at least this before the log
    chunk_frames: int = 8192  # frames transformed per step: bounds peak memory on long inputs

    def validate(self) -> None:
        require(self.sample_rate_hz > 0, "sample_rate_hz must be > 0")
        require(self.num_mel_bins > 0, "num_mel_bins must be > 0")
        require(self.window_samples >= 2, "window_s must span at least 2 samples")
        require(self.hop_samples >= 1, "hop_s must span at least 1 sample")
        require(self.fft_size >= self.window_samples, "fft_size must be >= the window in samples")
        require(0.0 <= self.mel_low_hz < self.mel_high_hz, "need 0 <= mel_low_hz < mel_high_hz")
        require(self.mel_high_hz <= self.sample_rate_hz / 2, "mel_high_hz must be <= Nyquist")
        require(self.log_floor_power > 0.0, "log_floor_power must be > 0")
        require(self.chunk_frames > 0, "chunk_frames must be > 0")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate_hz)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * self.sample_rate_hz)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: AudioFeatureConfig) -> np.ndarray:
    """(fft_size // 2 + 1, num_mel_bins) float32 HTK-mel triangles, peak 1, no area norm."""
    num_bins = config.fft_size // 2 + 1
    fft_hz = np.linspace(0.0, config.sample_rate_hz / 2, num_bins)  # (F,)
    mel_edges = np.linspace(
        hz_to_mel(config.mel_low_hz), hz_to_mel(config.mel_high_hz), config.num_mel_bins + 2
    )
    edges_hz = mel_to_hz(mel_edges)  # (M + 2,) left edge, centres, right edge
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]  # (M, 1)
    rising = (fft_hz[None, :] - left) / (centre - left)  # (M, F)
    falling = (right - fft_hz[None, :]) / (right - centre)  # (M, F)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (M, F)
    return np.ascontiguousarray(weights.T, dtype=np.float32)  # (F, M)


class LogMelExtractor:
    """Callable: (N,) float32 samples at `sample_rate_hz` in [-1, 1] -> (T, num_mel_bins) float16.

    The window and filterbank are built once here, so one instance serves many clips cheaply.
    """

    def __init__(self, config: AudioFeatureConfig | None = None) -> None:
        self.config = config or AudioFeatureConfig()
        self._window_len = self.config.window_samples
        self._hop = self.config.hop_samples
        # periodic Hann: the STFT convention (scipy's get_window('hann', n, fftbins=True))
        n = np.arange(self._window_len, dtype=np.float64)
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / self._window_len)).astype(np.float32)
        self._filterbank = mel_filterbank(self.config)  # (F, M)
        self._log_floor = np.float32(self.config.log_floor_power)

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self._window_len:
            return 0
        return 1 + (num_samples - self._window_len) // self._hop

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono (N,) samples, got shape {samples.shape}")
        num_frames = self.num_frames(samples.shape[0])
        out = np.empty((num_frames, self.config.num_mel_bins), dtype=np.float16)
        if num_frames == 0:
            return out
        # strided view, no copy: row t is samples[t * hop : t * hop + window]
        frames = np.lib.stride_tricks.sliding_window_view(samples, self._window_len)[:: self._hop]
        frames = frames[:num_frames]  # (T, W)
        step = self.config.chunk_frames
        for start in range(0, num_frames, step):
            chunk = frames[start : start + step]  # (t, W)
            # windowed frames written into a zero-padded (t, fft_size) buffer: the same values as
            # rfft(..., n=fft_size), without numpy padding a copy (a third of the feature time)
            padded = np.zeros((chunk.shape[0], self.config.fft_size), np.float32)  # (t, N)
            np.multiply(chunk, self._window, out=padded[:, : self._window_len])
            spectrum = np.fft.rfft(padded, axis=1)  # (t, F) complex64
            power = spectrum.real**2 + spectrum.imag**2  # (t, F)
            mel = power @ self._filterbank  # (t, M)
            out[start : start + step] = np.log(np.maximum(mel, self._log_floor))
        return out
