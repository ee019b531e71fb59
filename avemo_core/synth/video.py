"""Drawn face frames: a cartoon head on a room background whose expression follows FaceCues.

Geometry is in face units (1 = half the face height) around the face centre, rotated by the head's
roll and scaled to pixels, drawn anti-aliased with sub-pixel precision so slow head motion stays
smooth at low resolution. Eye sockets, brows, nose shadow and a dark mouth give the light/dark
layout a frontal-face detector looks for; the face sits near the frame centre at a decent size, so
a centre crop shows it too. Frames are BGR uint8 (H, W, 3), with sensor noise and lighting flicker.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from avemo_core.synth.cues import FaceCues, Speaker

SHIFT = 4  # fixed-point bits for OpenCV drawing: coordinates in 1/16 pixel
SCALE = 1 << SHIFT


@dataclasses.dataclass(frozen=True)
class Pose:
    """Head placement in one frame."""

    cx_px: float  # face centre x
    cy_px: float  # face centre y
    unit_px: float  # half the face height
    roll_rad: float  # head tilt, clockwise positive


def background(speaker: Speaker, width_px: int, height_px: int, seed: int) -> np.ndarray:
    """The speaker's room: a lit wall gradient with a few props, fixed for all of their frames."""
    rng = np.random.default_rng(seed)
    base = np.asarray(speaker.background_bgr, dtype=np.float32)
    shade = np.linspace(1.15, 0.8, height_px, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    wall = np.clip(base[None, None, :] * shade, 0, 255).repeat(width_px, axis=1)  # (H, W, 3)
    frame = wall.astype(np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, width_px)), int(rng.integers(0, height_px // 2))
        w, h = (
            int(rng.integers(width_px // 8, width_px // 3)),
            int(rng.integers(10, height_px // 2)),
        )
        colour = tuple(int(c) for c in rng.integers(20, 236, size=3))
        cv2.rectangle(frame, (x0, y0), (x0 + w, y0 + h), colour, thickness=-1)
    return frame


class FacePainter:
    """Draws one speaker's face in a given pose and expression onto a copy of their background."""

    def __init__(self, speaker: Speaker, backdrop: np.ndarray) -> None:
        self.speaker = speaker
        self.backdrop = backdrop
        skin = np.asarray(speaker.skin_bgr, dtype=np.float64)
        self.skin = _bgr(skin)
        self.socket = _bgr(skin * 0.55)
        self.sclera = _bgr(skin * 0.4 + 100.0)
        self.highlight = _bgr(skin + 0.2 * (255.0 - skin))
        self.shadow = _bgr(skin * 0.6)
        self.lip = _bgr(skin * 0.55 + np.array([0.0, 0.0, 40.0]))
        self.mouth = _bgr(np.array([30.0, 25.0, 60.0]))
        self.brow = _bgr(np.minimum(np.asarray(speaker.hair_bgr, dtype=np.float64), skin * 0.4))

    def draw(self, pose: Pose, face: FaceCues, talk: float, blink: float) -> np.ndarray:
        """One frame: talk 0..1 opens the mouth for speech, blink 0..1 closes the eyes."""
        img = self.backdrop.copy()
        sp = self.speaker
        cos, sin = np.cos(pose.roll_rad), np.sin(pose.roll_rad)

        def pt(x: float, y: float) -> tuple[int, int]:
            px = pose.cx_px + pose.unit_px * (x * cos - y * sin)
            py = pose.cy_px + pose.unit_px * (x * sin + y * cos)
            return round(px * SCALE), round(py * SCALE)

        def ellipse(x: float, y: float, ax: float, ay: float, colour: tuple) -> None:
            axes = (
                max(1, round(ax * pose.unit_px * SCALE)),
                max(1, round(ay * pose.unit_px * SCALE)),
            )
            cv2.ellipse(
                img,
                pt(x, y),
                axes,
                np.degrees(pose.roll_rad),
                0,
                360,
                colour,
                thickness=-1,
                lineType=cv2.LINE_AA,
                shift=SHIFT,
            )

        def poly(points: list[tuple[float, float]], colour: tuple, thickness: int = -1) -> None:
            arr = np.array([pt(x, y) for x, y in points], dtype=np.int32)  # (P, 2)
            if thickness < 0:
                cv2.fillPoly(img, [arr], colour, lineType=cv2.LINE_AA, shift=SHIFT)
            else:
                cv2.polylines(img, [arr], False, colour, thickness, cv2.LINE_AA, shift=SHIFT)

        line_px = max(1, round(pose.unit_px * 0.07))
        # Shoulders and neck, then hair behind the head, then the head.
        ellipse(0.0, 2.1, 1.7, 0.9, sp.shirt_bgr)
        poly([(-0.32, 0.7), (0.32, 0.7), (0.36, 1.5), (-0.36, 1.5)], self.shadow)
        ellipse(0.0, -0.2, 0.86, 0.9, sp.hair_bgr)
        ellipse(0.0, 0.05, 0.76, 0.97, self.skin)
        # Lit forehead, nose bridge and cheeks against darker sockets: the detector's light layout.
        ellipse(0.0, -0.5, 0.45, 0.2, self.highlight)
        ellipse(0.0, 0.05, 0.08, 0.22, self.highlight)
        # Eyes: dark sockets, white of the eye opened by eye_open, dark iris.
        lid = max(0.05, face.eye_open * (1.0 - blink))
        for side in (-1.0, 1.0):
            ex, ey = 0.32 * side, -0.12
            ellipse(ex, ey, 0.22, 0.15, self.socket)
            ellipse(ex, ey, 0.15, 0.075 * lid, self.sclera)
            ellipse(ex, ey, 0.065, min(0.065, 0.075 * lid), (40, 30, 25))
            # Brows: inner end up for brow_tilt > 0, the whole brow up for brow_raise > 0.
            base_y = -0.36 - 0.13 * face.brow_raise
            inner = (0.1 * side, base_y - 0.11 * face.brow_tilt)
            outer = (0.5 * side, base_y + 0.03 * face.brow_tilt)
            poly([inner, (0.3 * side, base_y - 0.04), outer], self.brow, thickness=line_px + 1)
        # Nose: a shadowed ridge; disgust wrinkles it and lifts it.
        lift = 0.06 * face.wrinkle
        poly([(0.0, -0.02), (0.07, 0.26 - lift), (-0.07, 0.28 - lift)], self.shadow)
        if face.wrinkle > 0.15:
            wrinkle_colour = _bgr(np.asarray(self.skin) * (1.0 - 0.45 * face.wrinkle))
            for dy in (-0.02, 0.05):
                poly([(-0.1, dy), (0.0, dy - 0.03), (0.1, dy)], wrinkle_colour, thickness=line_px)
        # Mouth: corners lifted by smile (and one side by asym), opened by mouth_open and speech.
        my = 0.5
        half_w = 0.28 * (1.0 + 0.15 * max(face.smile, 0.0))
        left_y = my - 0.13 * face.smile - 0.08 * face.asym
        right_y = my - 0.13 * face.smile + 0.08 * face.asym
        opening = 0.3 * min(1.0, face.mouth_open + 0.35 * talk)
        upper_mid = my - 0.02 - 0.06 * face.wrinkle
        lower_mid = upper_mid + 0.03 + opening + 0.06 * max(face.smile, 0.0)
        upper = _curve((-half_w, left_y), (0.0, upper_mid), (half_w, right_y))
        lower = _curve((half_w, right_y), (0.0, lower_mid), (-half_w, left_y))
        poly(upper + lower, self.mouth)
        poly(upper, self.lip, thickness=line_px)
        poly(lower, self.lip, thickness=line_px)
        return img


def _curve(a: tuple[float, float], mid: tuple[float, float], b: tuple[float, float]) -> list:
    """Quadratic Bezier from a to b passing through `mid` at its halfway point, as 9 points."""
    cx, cy = 2 * mid[0] - (a[0] + b[0]) / 2, 2 * mid[1] - (a[1] + b[1]) / 2  # control point
    ts = np.linspace(0.0, 1.0, 9)
    xs = (1 - ts) ** 2 * a[0] + 2 * (1 - ts) * ts * cx + ts**2 * b[0]
    ys = (1 - ts) ** 2 * a[1] + 2 * (1 - ts) * ts * cy + ts**2 * b[1]
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _bgr(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.round(colour), 0, 255))


def add_sensor_noise(frame: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Lighting flicker (a global gain) and per-pixel noise, as a cheap camera would add."""
    noisy = frame.astype(np.int16) * gain + rng.integers(-6, 7, size=frame.shape, dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)
