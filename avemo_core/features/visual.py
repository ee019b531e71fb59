"""Visual features: the largest face per sampled frame, cropped with a margin, grey, 64x64 uint8.

The detector is OpenCV's Haar cascade for frontal faces, whose weights ship inside the
opencv-python-headless 4.x wheel (5.x wheels dropped them), so nothing is downloaded at run time.
We use `frontalface_alt2` on the plain grey frame: with the astronaut photograph pasted at random
scales (faces of 27-63 px) and places into 360 px frames it found 320/320 faces and gave no false
hit in 212 face-free frames (noise, flat, natural photographs), where `frontalface_default` (and
histogram equalisation) found large false boxes on flat backgrounds, which the largest-face rule
then picks.
A frame without a detected face gives its centre square instead, flagged `face=False`, so every
sampled frame yields a crop and the share of real face crops is known per clip.

Within a clip, a face found in one frame is looked for first near where it was (the same detector
on a window around the last box, over a narrow range of sizes: a fraction of the cost of a
full-frame search), and the whole frame is searched when that fails and every
`full_search_every` frames, so a larger face that appears is picked up within that many frames.
Every face reported is a detection in its own frame; nothing is carried over blindly.
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from avemo_core.config import FrozenConfig, require


@dataclasses.dataclass(frozen=True)
class VisualFeatureConfig(FrozenConfig):
    fps: float = 5.0  # frames sampled per second of video (inside ffmpeg)
    crop_px: int = 64  # side of the square grey crop
    decode_max_side_px: int = 360  # ffmpeg scales frames so the longer side is at most this
    margin_frac: float = 0.25  # added on each side of the face box, as a fraction of its side
    min_face_px: int = 20  # smallest face side searched, in input-frame pixels (cascade window: 20)
    detect_scale_step: float = 1.1  # image-pyramid scale factor between detector passes
    detect_min_neighbors: int = (
        4  # overlapping hits needed to accept a face; more: fewer false ones
    )
    cascade_file: str = "haarcascade_frontalface_alt2.xml"  # in cv2.data.haarcascades, or a path
    full_search_every: int = 5  # sampled frames between full-frame searches (1: every frame)
    track_window: float = 2.0  # side of the search window around the last face, in face sides

    def validate(self) -> None:
        require(self.fps > 0, "fps must be > 0")
        require(self.crop_px > 0, "crop_px must be > 0")
        require(self.decode_max_side_px > 0, "decode_max_side_px must be > 0")
        require(self.margin_frac >= 0, "margin_frac must be >= 0")
        require(self.min_face_px >= 1, "min_face_px must be >= 1")
        require(self.detect_scale_step > 1.0, "detect_scale_step must be > 1")
        require(self.detect_min_neighbors >= 0, "detect_min_neighbors must be >= 0")
        require(bool(self.cascade_file), "cascade_file must be set")
        require(self.full_search_every >= 1, "full_search_every must be >= 1")
        require(self.track_window >= 1.0, "track_window must be >= 1")


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    crop: np.ndarray  # (crop_px, crop_px) uint8 grey
    face: bool  # False: no face found, `crop` is the frame centre
    box: tuple[int, int, int, int] | None  # (x, y, w, h) of the detected face in the input frame


def cascade_path(cascade_file: str) -> str:
    """Resolve a cascade name against the directory the opencv wheel ships them in."""
    return os.path.join(cv2.data.haarcascades, cascade_file)


def face_ratio(flags: np.ndarray) -> float:
    """Share of frames where a face was found (0.0 for no frames): stored per clip."""
    flags = np.asarray(flags, dtype=bool)
    return float(flags.mean()) if flags.size else 0.0


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
    """Detects the largest face (OpenCV's bundled Haar cascade) and crops it; else the centre.

    The cascade loads once per instance (a few ms), so a Ray Data actor builds one in `__init__`.
    """

    def __init__(self, config: VisualFeatureConfig | None = None) -> None:
        self.config = config or VisualFeatureConfig()
        path = cascade_path(self.config.cascade_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"face detector cascade not found: {path} (opencv-python-headless 4.x ships the "
                "Haar cascades, 5.x does not: install 'opencv-python-headless<5')"
            )
        try:
            self._detector = cv2.CascadeClassifier(path)
        except (cv2.error, SystemError) as err:  # OpenCV wraps its parse error in a SystemError
            raise RuntimeError(f"face detector cascade could not be loaded: {path}") from err
        if self._detector.empty():
            raise RuntimeError(f"face detector cascade could not be loaded: {path}")

    def __call__(self, frame: np.ndarray) -> FaceCrop:
        """frame: (H, W, 3) RGB or (H, W) grey uint8; the whole frame is searched."""
        grey = to_grey(frame)
        return self._crop(grey, self._largest_face(grey))

    def crop_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W[, 3]) uint8 frames of one clip -> ((T, crop_px, crop_px) uint8 crops, (T,)
        bool face flags), searching near the last face first (see the module docstring)."""
        side = self.config.crop_px
        crops = np.empty((len(frames), side, side), dtype=np.uint8)
        flags = np.zeros(len(frames), dtype=bool)
        last: tuple[int, int, int, int] | None = None
        for i, frame in enumerate(frames):
            grey = to_grey(frame)
            box = None
            if last is not None and i % self.config.full_search_every:
                box = self._face_near(grey, last)
            if box is None:
                box = self._largest_face(grey)
            result = self._crop(grey, box)
            crops[i], flags[i], last = result.crop, result.face, box
        return crops, flags

    def _crop(self, grey: np.ndarray, box: tuple[int, int, int, int] | None) -> FaceCrop:
        height, width = grey.shape
        if box is None:
            side = min(height, width)
            left, top = (width - side) // 2, (height - side) // 2
        else:
            left, top, side = square_around(box, self.config.margin_frac, height, width)
        region = grey[top : top + side, left : left + side]  # (side, side)
        size = (self.config.crop_px, self.config.crop_px)
        crop = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        return FaceCrop(crop=crop, face=box is not None, box=box)

    def _largest_face(
        self, grey: np.ndarray, min_px: int = 0, max_px: int = 0
    ) -> tuple[int, int, int, int] | None:
        """Largest detection with a side in [max(min_px, min_face_px), max_px] (0: no bound)."""
        min_px = max(self.config.min_face_px, min_px)
        found = self._detector.detectMultiScale(
            grey,
            scaleFactor=self.config.detect_scale_step,
            minNeighbors=self.config.detect_min_neighbors,
            minSize=(min_px, min_px),
            maxSize=(max_px, max_px),
        )
        if len(found) == 0:
            return None
        x, y, w, h = max(found, key=lambda b: int(b[2]) * int(b[3]))
        return int(x), int(y), int(w), int(h)

    def _face_near(
        self, grey: np.ndarray, last: tuple[int, int, int, int]
    ) -> tuple[int, int, int, int] | None:
        """The largest face of about the last one's size in a window around it, else None."""
        height, width = grey.shape
        x, y, w, h = last
        size = max(w, h)
        reach = round(size * self.config.track_window)
        left, top = max(0, x + w // 2 - reach // 2), max(0, y + h // 2 - reach // 2)
        window = grey[top : min(height, top + reach), left : min(width, left + reach)]
        box = self._largest_face(window, min_px=round(size / 1.5), max_px=round(size * 1.5))
        if box is None:
            return None
        bx, by, bw, bh = box
        return bx + left, by + top, bw, bh


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
