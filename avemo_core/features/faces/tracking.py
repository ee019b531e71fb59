"""One face per clip: pick a face, follow it by box overlap, hold it over short misses.

The face followed is the largest one scoring at least `min_score` at its first detection. In each
later frame the detection that overlaps the followed box most (IoU >= `min_iou`) continues it,
at any score the detector reports (a turned or dark head scores lower, a face-free frame has
nothing to overlap); when none does, the last box
is held for up to `hold_frames` frames, marked `HELD`. A longer miss loses the face, and the next
detection starts again with the largest face. Detection runs every `detect_every` frames (1: every
frame); the frames between hold the box the same way, so they count against `hold_frames` too.
While a face is followed, detection may search only a square around its box (`detect_near`,
`detectors.search_near`): a fraction of the frame's pixels, and the detector's cost grows with
them; the whole frame is searched to pick a face and to find one again once lost.

With `interpolate`, a run of held frames between two detections of the same followed face gets
boxes moved linearly from the one detection to the other instead of the first one's box held: a
head moving between two detections is followed, not left behind, so detection can run on fewer
frames for the same box overlap (numbers in `avemo_core.features.faces.detectors`).

Held frames count as face frames (the model sees their crops): each is at most `hold_frames`
sampled frames after the same person was detected, at 5 fps and the default 2 that is 0.4 s, and a
short miss on a turned or blurred head should not cut the person's sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from avemo_core.features.faces.detectors import FaceBox

# Per-frame face flags, as stored in `visual_face_flags` (one uint8 per visual frame).
NO_FACE = 0  # no face: the model does not see this frame
DETECTED = 1  # the followed face, detected in this frame
HELD = 2  # the followed face's last box, held over a short miss


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0.0 when they do not touch)."""
    inter_w = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    inter_h = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = inter_w * inter_h
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def pick_first(boxes: list[FaceBox], min_score: float = 0.0) -> FaceBox | None:
    """The face to follow when none is followed: the largest confident one, then the most
    confident; None when no box reaches `min_score`."""
    confident = [b for b in boxes if b.score >= min_score]
    return max(confident, key=lambda b: (b.area, b.score), default=None)


def follow(previous: FaceBox, boxes: list[FaceBox], min_iou: float) -> FaceBox | None:
    """The detection that continues `previous`: the one overlapping it most, if enough."""
    best = max(boxes, key=lambda b: iou(previous, b), default=None)
    if best is None or iou(previous, best) < min_iou:
        return None
    return best


def track_faces(
    count: int,
    detect: Callable[[int], list[FaceBox]],
    detect_every: int = 1,
    hold_frames: int = 2,
    min_iou: float = 0.3,
    min_score: float = 0.0,
    detect_near: Callable[[int, FaceBox], list[FaceBox]] | None = None,
    interpolate: bool = False,
) -> tuple[list[FaceBox | None], np.ndarray]:
    """Follow one face over `count` frames; `detect(i)` gives frame i's detections.

    `detect_near(i, box)`, when given, gives frame i's detections around `box` only; it is used
    while a face is followed (a search of the whole frame picks the face and finds it again once
    lost). Returns the followed box per frame (None where no face) and (count,) uint8 flags
    (NO_FACE / DETECTED / HELD).
    """
    boxes: list[FaceBox | None] = [None] * count
    flags = np.full(count, NO_FACE, dtype=np.uint8)
    tracks = np.full(count, -1)  # which following of a face each frame belongs to
    followed: FaceBox | None = None
    misses = track = 0
    for i in range(count):
        found, near = None, False
        if i % detect_every == 0:
            if detect_near is not None and followed is not None:
                found, near = detect_near(i, followed), True
            else:
                found = detect(i)
        match = None
        if found:
            match = (
                pick_first(found, min_score)
                if followed is None
                else follow(followed, found, min_iou)
            )
        if match is not None:
            track += followed is None  # a face picked anew starts a new following
            followed, misses = match, 0
            boxes[i], flags[i], tracks[i] = match, DETECTED, track
            continue
        misses += 1
        if followed is not None and misses <= hold_frames:
            boxes[i], flags[i], tracks[i] = followed, HELD, track
            continue
        if near:
            found = detect(i)  # lost near its last box: search the whole frame
        restart = pick_first(found, min_score) if followed is not None and found else None
        if restart is not None:  # lost: start again with the largest face here
            followed, misses, track = restart, 0, track + 1
            boxes[i], flags[i], tracks[i] = restart, DETECTED, track
            continue
        followed = None
    if interpolate:
        _interpolate_held(boxes, flags, tracks)
    return boxes, flags


def _interpolate_held(boxes: list[FaceBox | None], flags: np.ndarray, tracks: np.ndarray) -> None:
    """In place: each run of HELD frames with a DETECTED frame of the same following on both
    sides gets boxes moved linearly between those two detections (the scores of the first)."""
    last_detected = -1
    for i in range(len(boxes)):
        if flags[i] != DETECTED:
            continue
        start = last_detected
        last_detected = i
        if start < 0 or i - start < 2 or tracks[start] != tracks[i]:
            continue
        if not all(flags[j] == HELD for j in range(start + 1, i)):
            continue
        first, second = boxes[start], boxes[i]
        assert first is not None and second is not None
        ends = list(zip(first.as_tuple(), second.as_tuple(), strict=True))  # (x, y, w, h) pairs
        for j in range(start + 1, i):
            t = (j - start) / (i - start)
            boxes[j] = FaceBox(*(round(a + t * (b - a)) for a, b in ends), score=first.score)
