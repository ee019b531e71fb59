"""Audio features: 80-dim log-mel filterbank of 16 kHz mono, 25 ms window, 10 ms hop, stored as float16.

INTERFACE STUB, owned by the features helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avemo_core.config import FrozenConfig


@dataclasses.dataclass(frozen=True)
class AudioFeatureConfig(FrozenConfig):
    sample_rate_hz: int = 16000  # input is resampled to this rate (by ffmpeg) before features
    num_mel_bins: int = 80  # filterbank channels: the feature dimension
    window_s: float = 0.025  # analysis window length
    hop_s: float = 0.010  # frame shift


class LogMelExtractor:
    """Callable: (N,) float32 samples at `sample_rate_hz` in [-1, 1] -> (T, num_mel_bins) float16."""

    def __init__(self, config: AudioFeatureConfig | None = None) -> None:
        self.config = config or AudioFeatureConfig()

    def num_frames(self, num_samples: int) -> int:
        raise NotImplementedError

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError
