"""Generated frames for the face tests: the astronaut photograph pasted into frames (small, turned,
darkened, two people) and frames with no face at all.

The face's place in the 512x512 photograph was annotated by hand (eyebrows to chin, cheek to cheek),
not taken from a detector, so the checks compare the detector with an independent truth.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import skimage.data

ASTRONAUT_FACE_BOX = (180, 70, 90, 95)  # (x, y, w, h) in skimage.data.astronaut(), by hand
# face-free photographs of scikit-image (`camera` is left out: it shows a man's face)
FACE_FREE_PHOTOS = (
    "rocket", "brick", "grass", "coins", "coffee", "chelsea", "moon", "page", "text", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "cell", "colorwheel", "logo", "clock",
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()  # (512, 512, 3) uint8 RGB


def grey_of(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "plain":
        return np.full((height, width, 3), rng.integers(0, 256, size=3), dtype=np.uint8)
    photo = skimage.data.coffee()  # a real face-free photograph
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


def paste(
    photo: np.ndarray, frame: np.ndarray, scale: float, x_frac: float, y_frac: float
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Paste `photo` scaled at a relative position; return the frame and the expected face box."""
    side = round(photo.shape[0] * scale)
    small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    height, width = frame.shape[:2]
    x0 = round(x_frac * (width - side))
    y0 = round(y_frac * (height - side))
    out = frame.copy()
    out[y0 : y0 + side, x0 : x0 + side] = small
    fx, fy, fw, fh = ASTRONAUT_FACE_BOX
    return out, (x0 + fx * scale, y0 + fy * scale, fw * scale, fh * scale)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    return inter / (aw * ah + bw * bh - inter)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def rotated(photo: np.ndarray, degrees: float) -> np.ndarray:
    """The photograph turned in the image plane about the face centre (a tilted head)."""
    fx, fy, fw, fh = ASTRONAUT_FACE_BOX
    turn = cv2.getRotationMatrix2D((fx + fw / 2, fy + fh / 2), degrees, 1.0)
    return cv2.warpAffine(photo, turn, photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def squeezed(photo: np.ndarray, factor: float) -> np.ndarray:
    """The photograph narrowed about the face centre: the foreshortening of a head turned aside."""
    height, width = photo.shape[:2]
    narrow = cv2.resize(photo, (round(width * factor), height), interpolation=cv2.INTER_AREA)
    out = np.empty_like(photo)
    out[:] = np.median(photo.reshape(-1, photo.shape[-1]), axis=0).astype(np.uint8)
    left = (width - narrow.shape[1]) // 2
    out[:, left : left + narrow.shape[1]] = narrow
    return out


def darkened(frame: np.ndarray, gain: float) -> np.ndarray:
    """A dim scene: every pixel times `gain`."""
    return (frame.astype(np.float32) * gain).astype(np.uint8)


def face_free_frames(height: int = 202, width: int = 360, seed: int = 0) -> list[np.ndarray]:
    """Grey frames with no face: noise, flat, gradients, smooth textures and photographs."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(10)]
    frames += [np.full((height, width), value, np.uint8) for value in (0, 40, 128, 200, 255)]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
    for _ in range(10):
        a, b, c = rng.uniform(-1, 1, 3)
        ramp = a * xx + b * yy + c * np.hypot(xx - width / 2, yy - height / 2)  # (H, W)
        frames.append(_to_u8(ramp))
    for k in range(20):  # smooth random textures at several scales
        cell = k % 5 + 1
        noise = rng.normal(0, 1, (height // cell + 1, width // cell + 1)).astype(np.float32)
        noise = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1 + k % 4), (width, height))
        frames.append(_to_u8(noise))
    for name in FACE_FREE_PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = photo[..., :3] if photo.ndim == 3 else photo  # drop an alpha channel
        if photo.dtype != np.uint8:
            photo = _to_u8(photo.astype(np.float32))
        scale = width / max(photo.shape[:2])
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        frames.append(grey_of(cv2.resize(photo, size, interpolation=cv2.INTER_AREA)))
    return frames


def _to_u8(values: np.ndarray) -> np.ndarray:
    low, span = float(values.min()), float(np.ptp(values)) or 1.0
    return ((values - low) / span * 255).astype(np.uint8)
