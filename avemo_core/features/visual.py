"""Visual features: the largest face per sampled frame, cropped with a margin, grey, 64x64 uint8.

INTERFACE STUB, owned by the features helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avemo_core.config import FrozenConfig


@dataclasses.dataclass(frozen=True)
class VisualFeatureConfig(FrozenConfig):
    fps: float = 5.0  # frames sampled per second of video (inside ffmpeg)
    crop_px: int = 64  # side of the square grey crop
    decode_max_side_px: int = 360  # ffmpeg scales frames so the longer side is at most this


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    crop: np.ndarray  # (crop_px, crop_px) uint8 grey
    face: bool  # False: no face found, `crop` is the frame centre
    box: tuple[int, int, int, int] | None  # (x, y, w, h) of the detected face in the input frame


class FaceCropper:
    """Detects the largest face (OpenCV's bundled Haar cascade) and crops it; centre crop otherwise."""

    def __init__(self, config: VisualFeatureConfig | None = None) -> None:
        self.config = config or VisualFeatureConfig()

    def __call__(self, frame: np.ndarray) -> FaceCrop:
        """frame: (H, W, 3) RGB or (H, W) grey uint8."""
        raise NotImplementedError

    def crop_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W[, 3]) uint8 -> ((T, crop_px, crop_px) uint8 crops, (T,) bool face flags)."""
        raise NotImplementedError
