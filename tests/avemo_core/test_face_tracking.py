"""One face per clip: the followed face is kept by box overlap, held over short misses, given up
after longer ones; two people in frame give a crop sequence of one of them."""

from __future__ import annotations

import numpy as np

from avemo_core.features.faces.detectors import FaceBox, build_detector, search_near
from avemo_core.features.faces.tracking import DETECTED, HELD, NO_FACE, iou, track_faces
from avemo_core.features.visual import FaceCropper, VisualFeatureConfig
from tests.avemo_core.face_media import astronaut, background, correlation, grey_of, paste

LEFT = FaceBox(10, 10, 40, 40, 0.9)
RIGHT = FaceBox(200, 20, 60, 60, 0.9)


def moved(box: FaceBox, dx: int, score: float | None = None) -> FaceBox:
    return FaceBox(box.x + dx, box.y, box.w, box.h, box.score if score is None else score)


def test_iou() -> None:
    assert iou(LEFT, LEFT) == 1.0 and iou(LEFT, RIGHT) == 0.0
    assert iou(LEFT, moved(LEFT, 20)) == (20 * 40) / (2 * 1600 - 20 * 40)


def test_the_first_face_is_kept_when_a_larger_one_appears() -> None:
    small = FaceBox(10, 10, 40, 40, 0.9)
    script = [[small]] * 2 + [[moved(small, 4 * i), moved(RIGHT, -i)] for i in range(8)]
    boxes, flags = track_faces(len(script), lambda i: script[i])
    assert (flags == DETECTED).all()
    assert all(box is not None and box.x < 100 for box in boxes)  # the left person throughout


def test_largest_face_is_picked_at_first_detection() -> None:
    boxes, flags = track_faces(3, lambda i: [LEFT, RIGHT])
    assert boxes == [RIGHT] * 3 and flags.tolist() == [DETECTED] * 3


def test_short_misses_are_held_longer_ones_lose_the_face() -> None:
    script = [[LEFT], [], [], [LEFT], [], [], [], [RIGHT], [RIGHT]]
    boxes, flags = track_faces(len(script), lambda i: script[i], hold_frames=2)
    assert flags.tolist() == [
        DETECTED, HELD, HELD, DETECTED, HELD, HELD, NO_FACE, DETECTED, DETECTED
    ]  # fmt: skip
    assert boxes[1] == boxes[2] == LEFT and boxes[6] is None and boxes[7] == RIGHT


def test_another_face_is_taken_only_once_the_followed_one_is_lost() -> None:
    script = [[LEFT], [RIGHT], [RIGHT], [RIGHT], [RIGHT]]
    boxes, flags = track_faces(len(script), lambda i: script[i], hold_frames=2)
    assert flags.tolist() == [DETECTED, HELD, HELD, DETECTED, DETECTED]
    assert boxes == [LEFT, LEFT, LEFT, RIGHT, RIGHT]


def test_weak_boxes_continue_a_face_but_do_not_start_one() -> None:
    weak = moved(LEFT, 2, score=0.35)
    boxes, flags = track_faces(4, lambda i: [weak], min_score=0.6)
    assert flags.tolist() == [NO_FACE] * 4
    script = [[LEFT], [weak], [moved(weak, 2)], [moved(weak, 4)]]
    boxes, flags = track_faces(4, lambda i: script[i], min_score=0.6)
    assert flags.tolist() == [DETECTED] * 4 and boxes[3] == moved(weak, 4)


def test_detection_runs_on_its_schedule_and_the_frames_between_hold() -> None:
    asked: list[int] = []

    def detect(i: int) -> list[FaceBox]:
        asked.append(i)
        return [moved(LEFT, i)]

    boxes, flags = track_faces(7, detect, detect_every=3, hold_frames=2)
    assert asked == [0, 3, 6]
    assert flags.tolist() == [DETECTED, HELD, HELD, DETECTED, HELD, HELD, DETECTED]
    assert boxes[4] == moved(LEFT, 3)


def test_interpolated_boxes_move_between_two_detections_of_the_same_face() -> None:
    script = [[LEFT], [], [], [moved(LEFT, 12)], [], [], []]
    boxes, flags = track_faces(len(script), lambda i: script[i], hold_frames=3, interpolate=True)
    assert flags.tolist() == [DETECTED, HELD, HELD, DETECTED, HELD, HELD, HELD]
    assert [b.x for b in boxes if b is not None] == [10, 14, 18, 22, 22, 22, 22]  # the tail holds
    # a face lost and picked anew is another following: nothing is interpolated towards it
    lost = [[LEFT], [], [], [RIGHT]]
    boxes, flags = track_faces(len(lost), lambda i: lost[i], hold_frames=1, interpolate=True)
    assert flags.tolist() == [DETECTED, HELD, NO_FACE, DETECTED] and boxes[1] == LEFT
    held = [[LEFT], [RIGHT], [RIGHT], [RIGHT]]  # RIGHT restarts at 3, after LEFT held over 1-2
    boxes, _ = track_faces(len(held), lambda i: held[i], hold_frames=2, interpolate=True)
    assert boxes == [LEFT, LEFT, LEFT, RIGHT]


def test_a_followed_face_is_searched_near_its_box_and_the_frame_once_lost() -> None:
    whole: list[int] = []
    near: list[tuple[int, FaceBox]] = []
    script = [[LEFT], [LEFT], [], [], [], [RIGHT]]  # frames 2-4 miss the face: lost at 4

    def detect(i: int) -> list[FaceBox]:
        whole.append(i)
        return script[i]

    def detect_near(i: int, box: FaceBox) -> list[FaceBox]:
        near.append((i, box))
        return [b for b in script[i] if iou(b, box) > 0]

    boxes, flags = track_faces(len(script), detect, hold_frames=2, detect_near=detect_near)
    assert near == [(1, LEFT), (2, LEFT), (3, LEFT), (4, LEFT)]
    assert whole == [0, 4, 5]  # the pick, the search once lost, then nothing is followed
    assert flags.tolist() == [DETECTED, DETECTED, HELD, HELD, NO_FACE, DETECTED]
    assert boxes[5] == RIGHT


def test_search_near_finds_the_face_in_frame_coordinates() -> None:
    rng = np.random.default_rng(6)
    frame, _ = paste(astronaut(), background("photo", 202, 360, rng), 0.38, 0.8, 0.5)
    grey = grey_of(frame)
    detector = build_detector(VisualFeatureConfig())
    (full,) = [b for b in detector.detect(grey) if b.score >= 0.6]
    found = [b for b in search_near(detector, grey, full, 2.0, 96) if b.score >= 0.6]
    assert len(found) == 1 and iou(found[0], full) >= 0.7
    elsewhere = FaceBox(10, 60, full.w, full.h, 1.0)  # the square there holds no face
    assert [b for b in search_near(detector, grey, elsewhere, 2.0, 96) if b.score >= 0.6] == []


def test_two_people_in_frame_give_one_persons_crops() -> None:
    """The astronaut's head (left) and its mirror image (right: smaller at first, larger from frame
    3 on, so a largest-face rule would jump to it); both drift. Every crop is the left person's."""
    head = np.ascontiguousarray(astronaut()[20:240, 120:340])  # (220, 220, 3), the face inside
    mirror = np.ascontiguousarray(head[:, ::-1])
    scene = background("photo", 202, 360, np.random.default_rng(4))
    frames, left_only = [], []
    for k in range(10):
        right_scale = 0.5 if k < 3 else 0.7
        one, _ = paste(head, scene, 0.6, 0.02 + 0.01 * k, 0.5)
        both, _ = paste(mirror, one, right_scale, 0.98 - 0.01 * k, 0.4)
        frames.append(both)
        left_only.append(one)
    cropper = FaceCropper(VisualFeatureConfig())
    crops, flags = cropper.crop_frames(np.stack(frames))  # (10, 64, 64)
    alone, _ = cropper.crop_frames(np.stack(left_only))  # the left person alone in frame
    every = cropper.config.detect_every
    scheduled = np.arange(len(frames)) % every == 0
    assert (flags[scheduled] == DETECTED).all() and (flags[~scheduled] == HELD).all()
    right = cropper(frames[5])  # the largest face of a frame: the right person
    assert right.box is not None and right.box[0] > 180
    for k, (crop, own) in enumerate(zip(crops, alone, strict=True)):
        assert correlation(crop, own) >= 0.9, k
        assert correlation(crop, right.crop) < 0.6, k
