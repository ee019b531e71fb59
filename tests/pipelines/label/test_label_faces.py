"""Faceless frames are not faces: the model sees only face frames, and a clip whose video shows no
face anywhere is labelled from its audio, with the reason in its label row (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from avemo_core import inference
from avemo_core.checkpoint import Checkpoint, load_checkpoint
from avemo_core.data import NO_FACE_REASON, batch_from_columns
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.media.clips import ClipConfig, ClipExtractor
from avemo_core.media.probe import probe
from avemo_core.schema import clip_schema, label_schema, prob_column
from pipelines.label.labeller import label_columns
from tests.pipelines import media_factory as mf
from tests.pipelines.label.helpers import WINDOW_S, write_checkpoint

MODEL_INFO = {"model_name": "m", "model_version": "1", "model_run_id": "r"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return load_checkpoint(write_checkpoint(tmp_path_factory.mktemp("ckpt")))


def columns_of(rows: list[dict], path: Path) -> dict[str, np.ndarray]:
    """Clip rows through a real Parquet file, as a labelling job reads them."""
    pq.write_table(pa.Table.from_pylist(rows, schema=clip_schema()), path)
    table = pq.read_table(path)
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


def test_a_clip_without_a_face_is_labelled_from_audio_and_says_why(
    tmp_path: Path, checkpoint: Checkpoint
) -> None:
    extractor = ClipExtractor(clip=ClipConfig(window_s=WINDOW_S))
    face = mf.talking_head_mp4(tmp_path / "face.mp4", 1.0)
    pattern = mf.mp4(tmp_path / "pattern.mp4", 1.0)  # testsrc2 and a tone: video without a face
    rows = [
        row
        for path in (face, pattern)
        for row in extractor.rows(str(path), str(path), probe(str(path)))
    ]
    assert [r["has_visual"] for r in rows] == [True, False]
    assert rows[1]["visual_frames"] == 5  # the frames were sampled; none shows a face
    out = label_columns(
        checkpoint, columns_of(rows, tmp_path / "c.parquet"), MODEL_INFO, CPU, (3000, 150)
    )
    labels = pa.Table.from_pydict(out, schema=label_schema())  # conforms to the contract
    assert labels.column("modalities").to_pylist() == ["audio+visual", "audio"]
    assert labels.column("tags_condition").to_pylist() == ["av", "a"]
    assert labels.column("visual_reason").to_pylist() == [None, NO_FACE_REASON]
    for e in EMOTIONS:
        assert np.isfinite(out[prob_column("a", e)]).all()
        assert np.isfinite(out[prob_column("av", e)][0]) and np.isnan(out[prob_column("av", e)][1])
        assert np.isnan(out[prob_column("v", e)][1])


def test_the_model_sees_only_face_frames(tmp_path: Path, checkpoint: Checkpoint) -> None:
    """Whatever the frames without a face hold, the probabilities do not change; changing a
    face frame does change them (so the check can fail)."""
    rng = np.random.default_rng(0)
    flags = np.array([1, 0, 1, 2, 0, 1], np.uint8)
    crops = rng.integers(0, 256, (6, 64, 64), dtype=np.uint8)  # (Tv, H, W)
    row = {
        "clip_id": "c", "media_id": "m", "source_uri": "file:///m.mp4", "start_s": 0.0,
        "end_s": 1.2, "split": None, "has_audio": True, "has_visual": True,
        "audio_features": rng.standard_normal((120, 80)).astype("<f2").tobytes(),
        "audio_frames": 120, "audio_dims": 80,
        "visual_frames": 6, "visual_height": 64, "visual_width": 64,
        "visual_face_flags": flags.tobytes(), "face_ratio": 4 / 6, "audio_active_ratio": 1.0,
        **{e: None for e in EMOTIONS}, "schema_version": 2,
    }  # fmt: skip

    def probabilities(frames: np.ndarray, name: str) -> dict[str, np.ndarray]:
        columns = columns_of(
            [{**row, "visual_features": frames.tobytes()}], tmp_path / f"{name}.parquet"
        )
        assert batch_from_columns(columns).visual_mask.tolist() == [(flags > 0).tolist()]
        batch = batch_from_columns(columns, 3000, 150)
        with torch.inference_mode():
            return inference.probabilities(checkpoint.model, batch, CONDITIONS)

    base = probabilities(crops, "base")
    faceless_changed = crops.copy()
    faceless_changed[flags == 0] = 255 - faceless_changed[flags == 0]
    face_changed = crops.copy()
    face_changed[0] = 255 - face_changed[0]
    same = probabilities(faceless_changed, "faceless")
    other = probabilities(face_changed, "face")
    for condition in ("av", "v"):
        np.testing.assert_allclose(same[condition], base[condition], rtol=0, atol=1e-6)
        assert not np.allclose(other[condition], base[condition], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(same["a"], base["a"])
