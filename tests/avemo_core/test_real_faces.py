"""Faces on real footage: RAVDESS actor 05 (../shared/data/ravdess-av-actor05, 28 talking-head
clips, one frontal face in studio light). The default detector finds the face in every sampled
frame it searches: every frame with detection on each (none held), every other one (the frames
between held) with the default schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avemo_core.features.faces.tracking import DETECTED, NO_FACE
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig, ClipExtractor, MediaStats
from avemo_core.media.probe import probe
from tests.real_data import real_data


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    found = sorted(real_data("ravdess-av-actor05").glob("*.mp4"))
    assert len(found) == 28, "ravdess-av-actor05 should hold 28 clips (see its README)"
    return found


@pytest.mark.parametrize("detect_every", [1, 3])
def test_a_face_in_every_sampled_frame(clips: list[Path], detect_every: int) -> None:
    extractor = ClipExtractor(
        clip=ClipConfig(window_s=10.0),  # one clip per file
        visual=VisualFeatureConfig(detect_every=detect_every),
    )
    stats = MediaStats()
    for path in clips:
        rows = list(extractor.rows(str(path), str(path), probe(str(path)), None, stats))
        assert len(rows) == 1, path.name
        row = rows[0]
        flags = np.frombuffer(row["visual_face_flags"], np.uint8)
        assert row["has_visual"] and row["visual_frames"] >= 10, path.name
        assert (flags[::detect_every] == DETECTED).all(), (path.name, flags.tolist())
        assert (flags != NO_FACE).all(), (path.name, flags.tolist())
        assert row["face_ratio"] == 1.0
    assert stats.face_frames == stats.visual_frames > 28 * 10
