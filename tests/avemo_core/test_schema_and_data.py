"""Clip/label shard schemas read by plain pyarrow, clip ids, and rows -> padded, masked batches."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import avemo_core
from avemo_core import schema
from avemo_core.data import NO_FACE_REASON, batch_from_columns, visual_reason
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import (
    CLIP_SCHEMA_VERSION,
    clip_id_for,
    clip_schema,
    label_schema,
    media_id_for,
    modalities_name,
    prob_column,
)

DESIGN_CLIP_COLUMNS = {
    "clip_id": pa.string(),
    "media_id": pa.string(),
    "source_uri": pa.string(),
    "start_s": pa.float64(),
    "end_s": pa.float64(),
    "split": pa.string(),
    "has_audio": pa.bool_(),
    "has_visual": pa.bool_(),
    "audio_frames": pa.int32(),
    "visual_frames": pa.int32(),
    "visual_face_flags": pa.large_binary(),
    "face_ratio": pa.float32(),
    "audio_active_ratio": pa.float32(),
    "schema_version": pa.int32(),
    **{emotion: pa.float32() for emotion in EMOTIONS},
}


def clip_row(
    rng: np.random.Generator,
    uri: str,
    audio_frames: int,
    visual_frames: int,
    intensities: list[float | None],
    face_flags: list[int] | None = None,
) -> dict:
    """One clip row as an extractor writes it; a modality with 0 frames is absent; a face in
    every frame unless `face_flags` says otherwise."""
    audio = rng.standard_normal((audio_frames, 80)).astype("<f2")  # (Ta, 80)
    visual = rng.integers(0, 256, (visual_frames, 64, 64), dtype=np.uint8)  # (Tv, 64, 64)
    return {
        "clip_id": clip_id_for(uri, 0.0, 2.0),
        "media_id": media_id_for(uri),
        "source_uri": uri,
        "start_s": 0.0,
        "end_s": 2.0,
        "split": "train",
        "has_audio": audio_frames > 0,
        "has_visual": visual_frames > 0,
        "audio_features": audio.tobytes(),
        "audio_frames": audio_frames,
        "audio_dims": 80,
        "visual_features": visual.tobytes(),
        "visual_frames": visual_frames,
        "visual_height": 64,
        "visual_width": 64,
        "visual_face_flags": bytes([1] * visual_frames if face_flags is None else face_flags),
        "face_ratio": 0.5,
        "audio_active_ratio": 0.8,
        **dict(zip(EMOTIONS, intensities, strict=True)),
        "schema_version": CLIP_SCHEMA_VERSION,
    }


@pytest.fixture
def rows() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        clip_row(rng, "file:///a.mp4", 7, 3, [0.5, 0.0, 1.0, 0.0, 0.0, 2.0]),
        clip_row(rng, "file:///b.wav", 4, 0, [None] * 6),  # audio only, unlabelled
        clip_row(rng, "file:///c.mp4", 0, 5, [0.0, 0.3, 0.0, 0.0, 0.0, 0.0]),  # visual only
    ]


def test_clip_schema_has_the_design_columns_and_metadata() -> None:
    config = {"sample_rate_hz": 16000, "fps": 5.0}
    s = clip_schema(config)
    for name, dtype in DESIGN_CLIP_COLUMNS.items():
        assert s.field(name).type == dtype, name
    assert pa.types.is_large_binary(s.field("audio_features").type)
    assert pa.types.is_large_binary(s.field("visual_features").type)
    assert all(s.field(e).nullable for e in EMOTIONS) and s.field("split").nullable
    assert not s.field("clip_id").nullable
    meta = s.metadata
    assert meta[schema.META_KIND] == b"clips"
    assert meta[schema.META_SCHEMA_VERSION] == str(CLIP_SCHEMA_VERSION).encode()
    assert meta[schema.META_CODE_VERSION] == avemo_core.__version__.encode()
    assert json.loads(meta[schema.META_CONFIG]) == config


def test_label_schema_has_probabilities_per_condition_and_tags() -> None:
    s = label_schema({"model": "m"})
    for condition in CONDITIONS:
        for emotion in EMOTIONS:
            assert s.field(prob_column(condition, emotion)).nullable
    assert prob_column("av", "anger") == "prob_av_anger"
    assert s.field("tags").type == pa.list_(pa.string())
    assert {"modalities", "model_name", "model_version", "model_run_id"} <= set(s.names)
    assert s.metadata[schema.META_KIND] == b"labels"


def docstring_recipe() -> str:
    """The decode recipe exactly as schema.py's docstring documents it."""
    doc = schema.__doc__
    block = doc.split("decodes them without avemo:")[1].split("A missing modality")[0]
    return textwrap.dedent(block).strip()


def test_shard_is_readable_by_plain_pyarrow_with_the_documented_recipe(
    tmp_path: Path, rows: list[dict]
) -> None:
    table = pa.Table.from_pylist(rows, schema=clip_schema({"fps": 5.0}))
    pq.write_table(table, tmp_path / "part-0.parquet")
    read = pq.read_table(tmp_path / "part-0.parquet")  # plain pyarrow, no avemo schema passed
    assert read.schema.equals(clip_schema({"fps": 5.0}), check_metadata=True)
    recipe = docstring_recipe()
    assert "np.frombuffer" in recipe
    for row, written in zip(read.to_pylist(), rows, strict=True):
        scope = {"np": np, "row": row}
        exec(recipe, scope)  # the documented recipe, verbatim
        expected_audio = np.frombuffer(written["audio_features"], "<f2").reshape(-1, 80)
        assert scope["audio"].shape == (written["audio_frames"], 80)
        assert np.array_equal(scope["audio"], expected_audio)
        assert scope["visual"].shape == (written["visual_frames"], 64, 64)
        assert scope["visual"].tobytes() == written["visual_features"]
        assert scope["flags"].shape == (written["visual_frames"],)
        assert scope["flags"].tobytes() == written["visual_face_flags"]
    assert read.column("happiness").to_pylist()[1] is None


def test_clip_ids_are_deterministic_and_span_sensitive() -> None:
    uri = "s3://bucket/talk.mp4"
    assert clip_id_for(uri, 1.0, 3.5) == clip_id_for(uri, 1.0, 3.5)
    # Pinned (sha1 of "s3://bucket/talk.mp4|1000|3500"): resume and joins rely on stable ids.
    assert clip_id_for(uri, 1.0, 3.5) == "62435bb5e756a924ff9c"
    others = {
        clip_id_for(uri, 1.0, 3.6),
        clip_id_for(uri, 1.1, 3.5),
        clip_id_for(uri + "x", 1.0, 3.5),
        clip_id_for(uri, 3.5, 1.0),
    }
    assert len(others) == 4 and clip_id_for(uri, 1.0, 3.5) not in others
    assert clip_id_for(uri, 1.0, 3.5) == clip_id_for(uri, 1.0001, 3.4999)  # millisecond resolution
    assert media_id_for(uri) == media_id_for(uri) != media_id_for(uri + "x")


def test_modalities_name() -> None:
    assert modalities_name(True, True) == "audio+visual"
    assert modalities_name(True, False) == "audio"
    assert modalities_name(False, True) == "visual"
    with pytest.raises(ValueError, match="neither"):
        modalities_name(False, False)


def columns_of(rows: list[dict], tmp_path: Path) -> dict[str, np.ndarray]:
    """Columns as Ray Data's numpy batches hand them over, read back from a real Parquet file."""
    pq.write_table(pa.Table.from_pylist(rows, schema=clip_schema()), tmp_path / "c.parquet")
    table = pq.read_table(tmp_path / "c.parquet")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def test_batch_pads_masks_and_labels(tmp_path: Path, rows: list[dict]) -> None:
    batch = batch_from_columns(columns_of(rows, tmp_path))
    assert batch.audio.shape == (3, 7, 80) and batch.visual.shape == (3, 5, 64, 64)
    assert batch.audio_mask.tolist() == [[True] * 7, [True] * 4 + [False] * 3, [False] * 7]
    assert batch.visual_mask.tolist() == [[True] * 3 + [False] * 2, [False] * 5, [True] * 5]
    assert batch.has_audio.tolist() == [True, True, False]
    assert batch.has_visual.tolist() == [True, False, True]
    audio_b = np.frombuffer(rows[1]["audio_features"], "<f2").reshape(4, 80).astype(np.float32)
    assert torch.equal(batch.audio[1, :4], torch.from_numpy(audio_b))
    assert (batch.audio[1, 4:] == 0).all() and (batch.audio[2] == 0).all()
    visual_a = np.frombuffer(rows[0]["visual_features"], np.uint8).reshape(3, 64, 64)
    assert torch.allclose(batch.visual[0, :3], torch.from_numpy(visual_a / 255.0).float())
    assert (batch.visual[0, 3:] == 0).all() and (batch.visual[1] == 0).all()
    assert batch.visual.min() >= 0.0 and batch.visual.max() <= 1.0
    assert batch.labels.tolist() == [[1, 0, 1, 0, 0, 1], [0] * 6, [0, 1, 0, 0, 0, 0]]
    assert batch.label_known.tolist() == [True, False, True]
    assert batch.audio.dtype == torch.float32 and batch.labels.dtype == torch.float32
    assert len(batch) == 3


def test_batch_frame_caps(tmp_path: Path, rows: list[dict]) -> None:
    batch = batch_from_columns(columns_of(rows, tmp_path), max_audio_frames=5, max_visual_frames=2)
    assert batch.audio.shape == (3, 5, 80) and batch.visual.shape == (3, 2, 64, 64)
    assert batch.audio_mask.sum(dim=1).tolist() == [5, 4, 0]
    assert batch.visual_mask.sum(dim=1).tolist() == [2, 0, 2]


def test_batch_without_label_columns_is_unlabelled(tmp_path: Path, rows: list[dict]) -> None:
    columns = columns_of(rows, tmp_path)
    for emotion in EMOTIONS:
        del columns[emotion]
    batch = batch_from_columns(columns)
    assert batch.label_known.tolist() == [False] * 3
    assert batch.labels.shape == (3, len(EMOTIONS))


def test_faceless_frames_are_masked_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [
        clip_row(rng, "file:///a.mp4", 4, 5, [None] * 6, face_flags=[1, 0, 2, 0, 1]),
        clip_row(rng, "file:///b.mp4", 4, 3, [None] * 6),
    ]
    batch = batch_from_columns(columns_of(rows, tmp_path))
    # held frames (2) count as face frames, frames without a face (0) are not seen
    assert batch.visual_mask.tolist() == [
        [True, False, True, False, True],
        [True] * 3 + [False] * 2,
    ]
    capped = batch_from_columns(columns_of(rows, tmp_path), max_visual_frames=2)
    assert capped.visual_mask.tolist() == [[True, False], [True, True]]


def test_face_flags_must_match_the_frames(tmp_path: Path) -> None:
    rows = [clip_row(np.random.default_rng(2), "file:///a.mp4", 4, 5, [None] * 6, [1, 1])]
    with pytest.raises(ValueError, match="2 flags for 5 frames"):
        batch_from_columns(columns_of(rows, tmp_path))


def test_a_clip_without_face_frames_has_no_visual_input(tmp_path: Path) -> None:
    """As extraction writes it: has_visual false, the frames and their all-zero flags kept."""
    row = clip_row(np.random.default_rng(3), "file:///a.mp4", 6, 4, [None] * 6, [0] * 4)
    row["has_visual"] = False
    batch = batch_from_columns(columns_of([row], tmp_path))
    assert batch.has_visual.tolist() == [False] and batch.has_audio.tolist() == [True]
    assert visual_reason(False, 4) == NO_FACE_REASON
    assert visual_reason(True, 4) is None and visual_reason(False, 0) is None


def version_1_schema() -> pa.Schema:
    """The clip schema as version 1 wrote it: no face flags, no speaker."""
    current = clip_schema()
    fields = [f for f in current if f.name not in ("visual_face_flags", "speaker")]
    return pa.schema(fields, metadata={**current.metadata, schema.META_SCHEMA_VERSION: b"1"})


def test_version_1_shards_are_still_read(tmp_path: Path, rows: list[dict]) -> None:
    """Version 1 has no per-frame flags: every visual frame counts, as it did."""
    v1_rows = [
        {k: v for k, v in r.items() if k not in ("visual_face_flags", "speaker")} for r in rows
    ]
    for r in v1_rows:
        r["schema_version"] = 1
    path = tmp_path / "v1.parquet"
    pq.write_table(pa.Table.from_pylist(v1_rows, schema=version_1_schema()), path)
    table = pq.read_table(path)
    assert "visual_face_flags" not in table.column_names
    columns = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}
    batch = batch_from_columns(columns)
    assert batch.visual_mask.tolist() == [[True] * 3 + [False] * 2, [False] * 5, [True] * 5]
    current = batch_from_columns(columns_of(rows, tmp_path))  # the same rows as version 2
    assert torch.equal(batch.visual, current.visual)
    assert torch.equal(batch.visual_mask, current.visual_mask)


def test_an_unannotated_emotion_leaves_the_others_labelled(
    tmp_path: Path, rows: list[dict]
) -> None:
    """A corpus without surprise (null there) still labels its clips' other five emotions."""
    rows = [{**rows[0], "surprise": None}, *rows[1:]]
    batch = batch_from_columns(columns_of(rows, tmp_path))
    assert batch.label_known.tolist() == [True, False, True]
    assert batch.label_mask[0].tolist() == [e != "surprise" for e in EMOTIONS]
    assert batch.label_mask[1].tolist() == [False] * len(EMOTIONS)
    assert batch.label_mask[2].tolist() == [True] * len(EMOTIONS)
