"""Face crops on a real photograph (scikit-image's astronaut) pasted into larger frames.

The face's place in the 512x512 photograph was annotated by hand (eyebrows to chin, cheek to cheek),
not taken from the detector, so the checks compare the detector with an independent truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from avemo_core.config import ConfigError
from avemo_core.features.visual import (
    FaceCrop,
    FaceCropper,
    VisualFeatureConfig,
    face_ratio,
    square_around,
)

ASTRONAUT_FACE_BOX = (180, 70, 90, 95)  # (x, y, w, h) in skimage.data.astronaut(), by hand
MIN_IOU = 0.5  # detected box vs the annotated one, scaled to where it was pasted
# crop vs the same-sized crop around the annotated face: 0.82..0.96 measured, ~0.3 when shifted by
# a quarter of the face
MIN_CROP_CORRELATION = 0.75


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="module")
def cropper() -> FaceCropper:
    return FaceCropper()


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


def grey_of(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def centre_crop(grey: np.ndarray, crop_px: int) -> np.ndarray:
    height, width = grey.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    region = grey[top : top + side, left : left + side]
    return cv2.resize(region, (crop_px, crop_px), interpolation=cv2.INTER_AREA)


def square_crop(
    grey: np.ndarray, centre_x: float, centre_y: float, side: int, px: int
) -> np.ndarray:
    """The square of `side` centred on a point, moved inside the frame, resized to px x px."""
    height, width = grey.shape
    left = min(max(round(centre_x - side / 2), 0), width - side)
    top = min(max(round(centre_y - side / 2), 0), height - side)
    region = grey[top : top + side, left : left + side]
    return cv2.resize(region, (px, px), interpolation=cv2.INTER_AREA)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


# (frame height, frame width, background, photo scale, x_frac, y_frac): faces of 29..66 px, frames
# as ffmpeg decodes them (long side 360), the photo in corners and in the middle
PLACEMENTS = [
    (202, 360, "noise", 0.32, 0.0, 0.0),
    (202, 360, "plain", 0.38, 1.0, 1.0),
    (360, 360, "plain", 0.55, 0.5, 0.5),
    (360, 270, "photo", 0.45, 0.1, 0.9),
    (360, 480, "noise", 0.70, 0.8, 0.2),
    (270, 360, "photo", 0.50, 1.0, 0.0),
    (360, 640, "plain", 0.60, 0.3, 0.6),
]


@pytest.mark.parametrize(("height", "width", "kind", "scale", "x_frac", "y_frac"), PLACEMENTS)
def test_finds_the_pasted_face(
    astronaut: np.ndarray,
    cropper: FaceCropper,
    height: int,
    width: int,
    kind: str,
    scale: float,
    x_frac: float,
    y_frac: float,
) -> None:
    rng = np.random.default_rng(round(scale * 100))
    frame, expected = paste(astronaut, background(kind, height, width, rng), scale, x_frac, y_frac)
    result = cropper(frame)
    assert result.face and result.box is not None
    assert iou(result.box, expected) >= MIN_IOU, (result.box, expected)
    # the square the crop was cut from holds the whole annotated face
    config = cropper.config
    left, top, side = square_around(result.box, config.margin_frac, height, width)
    ex, ey, ew, eh = expected
    assert left <= ex and top <= ey and ex + ew <= left + side and ey + eh <= top + side
    # the crop looks like the region of the same side centred on the annotated face (the side is
    # the detector's, checked by the IoU above) and unlike one shifted by a quarter of the face
    grey = grey_of(frame)
    centre_x, centre_y = ex + ew / 2, ey + eh / 2
    assert result.crop.shape == (64, 64) and result.crop.dtype == np.uint8
    reference = square_crop(grey, centre_x, centre_y, side, config.crop_px)
    assert correlation(result.crop, reference) >= MIN_CROP_CORRELATION
    shifted = square_crop(grey, centre_x + ew / 4, centre_y, side, config.crop_px)
    assert correlation(shifted, reference) < MIN_CROP_CORRELATION


def test_grey_and_rgb_input_give_the_same_crop(astronaut: np.ndarray, cropper: FaceCropper) -> None:
    frame, _ = paste(
        astronaut, background("plain", 202, 360, np.random.default_rng(0)), 0.38, 0.5, 0
    )
    from_rgb = cropper(frame)
    from_grey = cropper(grey_of(frame))
    assert from_rgb.face and from_grey.face
    assert from_rgb.box == from_grey.box
    np.testing.assert_array_equal(from_rgb.crop, from_grey.crop)


@pytest.mark.parametrize("kind", ["noise", "plain", "photo"])
def test_no_face_gives_flagged_centre_crop(cropper: FaceCropper, kind: str) -> None:
    frame = background(kind, 202, 360, np.random.default_rng(3))
    result = cropper(frame)
    assert result == FaceCrop(crop=result.crop, face=False, box=None)
    np.testing.assert_array_equal(result.crop, centre_crop(grey_of(frame), 64))


def test_face_free_photographs_give_no_face(cropper: FaceCropper) -> None:
    for name in ("rocket", "brick", "grass", "coins"):
        photo = getattr(skimage.data, name)()  # grey or RGB, real photographs without faces
        scale = 360 / max(photo.shape[:2])
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        result = cropper(cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
        assert not result.face, name


def test_crop_frames_stacks_crops_and_flags(astronaut: np.ndarray, cropper: FaceCropper) -> None:
    rng = np.random.default_rng(5)
    with_face, _ = paste(astronaut, background("noise", 202, 360, rng), 0.38, 0.2, 0.8)
    frames = np.stack([with_face, background("noise", 202, 360, rng), with_face])  # (3, H, W, 3)
    crops, flags = cropper.crop_frames(frames)
    assert crops.shape == (3, 64, 64) and crops.dtype == np.uint8
    assert flags.tolist() == [True, False, True]
    for crop, frame in zip(crops, frames, strict=True):
        np.testing.assert_array_equal(crop, cropper(frame).crop)
    grey_crops, grey_flags = cropper.crop_frames(
        np.stack([grey_of(f) for f in frames])
    )  # (3, H, W)
    np.testing.assert_array_equal(grey_crops, crops)
    np.testing.assert_array_equal(grey_flags, flags)
    empty_crops, empty_flags = cropper.crop_frames(np.zeros((0, 202, 360, 3), dtype=np.uint8))
    assert empty_crops.shape == (0, 64, 64) and empty_flags.shape == (0,)
    assert face_ratio(flags) == pytest.approx(2 / 3)


def test_face_ratio() -> None:
    assert face_ratio(np.array([True, False, True, True])) == 0.75
    assert face_ratio(np.zeros(0, dtype=bool)) == 0.0


def test_square_is_moved_into_the_frame_not_cut() -> None:
    # face at the top-left corner: the square keeps its side and starts at (0, 0)
    assert square_around((0, 2, 40, 40), 0.25, 200, 300) == (0, 0, 60)
    # face at the bottom-right corner
    assert square_around((270, 170, 30, 30), 0.5, 200, 300) == (240, 140, 60)
    # face in the middle: centred on the box
    assert square_around((100, 80, 40, 40), 0.25, 200, 300) == (90, 70, 60)
    # margin larger than the frame: the square shrinks to the short side
    assert square_around((50, 20, 180, 180), 0.25, 200, 300) == (40, 0, 200)


def test_crop_size_follows_config(astronaut: np.ndarray) -> None:
    cropper = FaceCropper(VisualFeatureConfig(crop_px=32, margin_frac=0.0))
    frame, expected = paste(
        astronaut, background("plain", 360, 360, np.random.default_rng(1)), 0.6, 0.5, 0.5
    )
    result = cropper(frame)
    assert result.crop.shape == (32, 32)
    assert result.face and iou(result.box, expected) >= MIN_IOU


def test_missing_or_broken_cascade_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="opencv-python-headless"):
        FaceCropper(VisualFeatureConfig(cascade_file="haarcascade_no_such_face.xml"))
    for text in (
        "<opencv_storage><cascade>nothing</cascade></opencv_storage>",
        "<opencv_storage/>",
    ):
        broken = tmp_path / "broken.xml"
        broken.write_text(text)
        with pytest.raises(RuntimeError, match="could not be loaded"):
            FaceCropper(VisualFeatureConfig(cascade_file=str(broken)))


def test_rejects_frames_of_the_wrong_kind(cropper: FaceCropper) -> None:
    with pytest.raises(ValueError, match="uint8"):
        cropper(np.zeros((100, 100, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        cropper(np.zeros((100, 100, 4), dtype=np.uint8))


def test_config_round_trip_and_validation() -> None:
    config = VisualFeatureConfig(fps=2.5, margin_frac=0.4, cascade_file="x.xml")
    assert VisualFeatureConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        VisualFeatureConfig(detect_scale_step=1.0)
    with pytest.raises(ConfigError):
        VisualFeatureConfig(margin_frac=-0.1)


def test_cheap_to_build_and_fast_per_frame(astronaut: np.ndarray) -> None:
    """Built once per Ray actor and run on every sampled frame of hours of video.

    CPU time of this process, not wall time, so other jobs on a shared machine do not fail it.
    """
    start = time.process_time()
    cropper = FaceCropper()
    build_s = time.process_time() - start
    frame, _ = paste(
        astronaut, background("photo", 202, 360, np.random.default_rng(2)), 0.38, 0.3, 0.3
    )
    frames = np.stack([frame] * 10)  # (10, H, W, 3)
    start = time.process_time()
    _, flags = cropper.crop_frames(frames)
    per_frame_s = (time.process_time() - start) / len(frames)
    assert flags.all()
    assert build_s < 1.0, f"construction took {build_s:.2f} s"
    assert per_frame_s < 0.25, f"{per_frame_s * 1000:.0f} ms CPU per 360x202 frame"


def test_search_near_the_last_face_finds_what_a_full_search_finds(astronaut: np.ndarray) -> None:
    """A face drifting across the frame: the tracked crops match the full-search ones."""
    rng = np.random.default_rng(7)
    scene = background("photo", 202, 360, rng)
    frames = np.stack(
        [paste(astronaut, scene, 0.38, 0.1 + 0.06 * k, 0.4 + 0.03 * k)[0] for k in range(12)]
    )  # (12, H, W, 3)
    full_crops, full_flags = FaceCropper(VisualFeatureConfig(full_search_every=1)).crop_frames(
        frames
    )
    crops, flags = FaceCropper(VisualFeatureConfig(full_search_every=5)).crop_frames(frames)
    assert flags.all() and full_flags.all()
    for tracked, full in zip(crops, full_crops, strict=True):
        assert correlation(tracked, full) >= MIN_CROP_CORRELATION


def test_a_larger_face_is_taken_at_the_next_full_search(astronaut: np.ndarray) -> None:
    """A second, larger face (mirrored, to tell them apart) appears in frame 2: tracking keeps the
    first until frame 5's full search, which takes the largest, as the rule says."""
    rng = np.random.default_rng(8)
    scene = background("noise", 360, 640, rng)
    small_only, _ = paste(astronaut, scene, 0.35, 0.05, 0.5)
    both, _ = paste(np.ascontiguousarray(astronaut[:, ::-1]), small_only, 0.6, 0.95, 0.5)
    frames = np.stack([small_only, small_only] + [both] * 8)  # (10, H, W, 3)
    largest = FaceCropper(VisualFeatureConfig(full_search_every=1))(both).crop
    crops, flags = FaceCropper(VisualFeatureConfig(full_search_every=5)).crop_frames(frames)
    assert flags.all()
    assert all(correlation(crop, largest) < 0.5 for crop in crops[:5])  # the first face
    assert all(correlation(crop, largest) >= MIN_CROP_CORRELATION for crop in crops[5:])


def test_full_search_every_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="full_search_every"):
        VisualFeatureConfig(full_search_every=0)
