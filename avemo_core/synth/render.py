"""One planned media file -> its audio samples and its video frames (before encoding).

Each file draws from its own random streams, seeded by (corpus seed, file index), so files render
alike whichever order or process makes them. The face holds each segment's expression (with a slow
wobble), blends between segments in the pauses, blinks now and then, moves its mouth with the
syllables of the voice plan (also in video-only files: the person still talks), and bobs and rolls
its head; the voice is room noise plus each segment's syllables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from avemo_core.synth.audio import plan_syllables, room_noise, synth_voice, talk_envelope, to_pcm16
from avemo_core.synth.config import SynthConfig
from avemo_core.synth.cues import FaceCues, audio_cues, face_cues
from avemo_core.synth.plan import FilePlan
from avemo_core.synth.video import FacePainter, Pose, add_sensor_noise, background

BLINK_EVERY_S = 3.0  # mean time between blinks
BLINK_S = 0.15  # how long the eyes stay closed


@dataclasses.dataclass(frozen=True)
class RenderedFile:
    pcm: bytes | None  # 16-bit mono PCM at config.sample_rate_hz; None without an audio track
    frames: Iterator[np.ndarray] | None  # BGR uint8 (H, W, 3), lazily drawn; None without video
    n_frames: int  # frames the iterator yields (0 without video)


def render_file(plan: FilePlan, config: SynthConfig) -> RenderedFile:
    """Audio and frames of `plan`; frames are drawn lazily as the encoder consumes them."""
    cue_rng, audio_rng, video_rng = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence([config.seed, 1, plan.index]).spawn(3)
    )
    faces, voices = [], []
    for seg in plan.segments:
        x = np.asarray(seg.intensities)
        acues = audio_cues(x, plan.speaker, cue_rng, config.cue_gain)
        faces.append(face_cues(x, plan.speaker, cue_rng, config.cue_gain))
        voices.append((acues, plan_syllables(acues, seg.end_s - seg.start_s, cue_rng)))
    pcm = None
    if plan.has_audio:
        sr = config.sample_rate_hz
        samples = room_noise(round(plan.duration_s * sr), plan.speaker.noise_db, audio_rng)
        for seg, (acues, syllables) in zip(plan.segments, voices, strict=True):
            voice = synth_voice(
                syllables, acues, plan.speaker, seg.end_s - seg.start_s, sr, audio_rng
            )
            i0 = round(seg.start_s * sr)
            samples[i0 : i0 + len(voice)] += voice
        pcm = to_pcm16(samples)
    if not plan.has_video:
        return RenderedFile(pcm, None, 0)
    n_frames = round(plan.duration_s * config.fps)
    times = np.arange(n_frames) / config.fps  # (T,)
    talk = np.zeros(n_frames)
    for seg, (_, syllables) in zip(plan.segments, voices, strict=True):
        talk = np.maximum(talk, talk_envelope(syllables, times - seg.start_s))
    expression = _expression_track(plan, faces, times, video_rng)  # (T, 7)
    return RenderedFile(pcm, _frames(plan, config, times, expression, talk, video_rng), n_frames)


def _expression_track(
    plan: FilePlan, faces: list[FaceCues], times: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """FaceCues per frame (T, 7): held within segments, blended linearly across the pauses."""
    anchors_t, anchors_v = [], []
    for seg, face in zip(plan.segments, faces, strict=True):
        anchors_t += [seg.start_s, seg.end_s]
        anchors_v += [face.as_array(), face.as_array()]
    values = np.stack(anchors_v)  # (2S, 7)
    track = np.stack(
        [np.interp(times, anchors_t, values[:, j]) for j in range(values.shape[1])], axis=1
    )  # (T, 7)
    wobble = 0.04 * np.sin(
        2 * np.pi * rng.uniform(0.2, 0.6, size=track.shape[1]) * times[:, None]
        + rng.uniform(0, 2 * np.pi, size=track.shape[1])
    )  # (T, 7)
    return track + wobble


def _frames(
    plan: FilePlan,
    config: SynthConfig,
    times: np.ndarray,
    expression: np.ndarray,
    talk: np.ndarray,
    rng: np.random.Generator,
) -> Iterator[np.ndarray]:
    sp = plan.speaker
    w, h = config.width_px, config.height_px
    painter = FacePainter(sp, background(sp, w, h, int(rng.integers(2**31))))
    motion = rng.uniform(0.1, 0.5, size=4)  # bob x, bob y, scale, roll frequencies (Hz)
    phase = rng.uniform(0, 2 * np.pi, size=5)
    bob_px = rng.uniform(1.0, 5.0)
    unit_px = sp.face_scale * h / 2
    blink_at = np.cumsum(rng.exponential(BLINK_EVERY_S, size=int(times[-1] / 1.0) + 2))
    for i, t in enumerate(times):
        pose = Pose(
            cx_px=sp.face_cx * w + bob_px * np.sin(2 * np.pi * motion[0] * t + phase[0]),
            cy_px=sp.face_cy * h + 0.5 * bob_px * np.sin(2 * np.pi * motion[1] * t + phase[1]),
            unit_px=unit_px * (1 + 0.04 * np.sin(2 * np.pi * motion[2] * t + phase[2])),
            roll_rad=0.08 * np.sin(2 * np.pi * motion[3] * t + phase[3]),
        )
        blink = float(np.any((t >= blink_at) & (t < blink_at + BLINK_S)))
        frame = painter.draw(pose, FaceCues(*expression[i].tolist()), float(talk[i]), blink)
        gain = 1.0 + 0.03 * np.sin(2 * np.pi * 0.3 * t + phase[4])
        yield add_sensor_noise(frame, gain, rng)
