"""The Parquet contracts, declared once: clip shards (features), label shards (predictions) and
the per-media label summary.

Features are stored as little-endian, row-major binary blobs beside their shape columns, so any
Parquet reader decodes them without avemo:

    audio = np.frombuffer(row["audio_features"], "<f2").reshape(
        row["audio_frames"], row["audio_dims"])
    visual = np.frombuffer(row["visual_features"], "u1").reshape(
        row["visual_frames"], row["visual_height"], row["visual_width"])
    flags = np.frombuffer(row["visual_face_flags"], "u1")  # (visual_frames,)

A missing modality has `has_audio`/`has_visual` false. No audio or no video stream: zero frames
and an empty blob. A video in which no sampled frame shows a face has no visual input for the
model either, so `has_visual` is false too, but its zero crops and all-zero flags are kept, so
`visual_frames > 0` with `has_visual` false says why (`visual_reason` of avemo_core/data.py).

`visual_face_flags` (schema version 2) holds one uint8 per visual frame: 0 no face (the crop is
zeros and the model does not see the frame), 1 the clip's followed face detected in that frame,
2 its box held over a short miss (counts as a face frame; avemo_core/features/faces/tracking.py).
`face_ratio` is the share of non-zero flags.

Version 1 shards (no `visual_face_flags`) are still read: every visual frame counts as a face
frame there, as it did when they were written.

`speaker` (schema version 3) is the manifest's `speaker` column (`avemo prepare` writes it), null
when the manifest has none or extraction ran without one. It groups the clips of one speaker for
the speaker-level standardisation of the utterance functionals (avemo_core/speakers.py).
Version 1 and 2 shards have no `speaker`: every clip's speaker is unknown there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from avemo_core import __version__
from avemo_core.labels import CONDITIONS, EMOTIONS

CLIP_SCHEMA_VERSION = 3  # 2: visual_face_flags, faceless frames masked out; 3: speaker
LABEL_SCHEMA_VERSION = 2  # 2: visual_reason

# File-metadata keys every shard carries.
META_SCHEMA_VERSION = b"avemo.schema_version"
META_CODE_VERSION = b"avemo.code_version"
META_CONFIG = b"avemo.config"
META_KIND = b"avemo.kind"

AUDIO_DTYPE = "<f2"  # float16, little-endian
VISUAL_DTYPE = "u1"  # uint8
FACE_FLAGS_DTYPE = "u1"  # uint8, one per visual frame

# Columns that identify a clip; both shard kinds start with them.
_KEY_FIELDS: list[pa.Field] = [
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("media_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
]
# The feature columns: what a model reads from a clip shard.
_FEATURE_FIELDS: list[pa.Field] = [
    pa.field("has_audio", pa.bool_(), nullable=False),
    pa.field("has_visual", pa.bool_(), nullable=False),
    pa.field("audio_features", pa.large_binary(), nullable=False),
    pa.field("audio_frames", pa.int32(), nullable=False),
    pa.field("audio_dims", pa.int32(), nullable=False),
    pa.field("visual_features", pa.large_binary(), nullable=False),
    pa.field("visual_frames", pa.int32(), nullable=False),
    pa.field("visual_height", pa.int32(), nullable=False),
    pa.field("visual_width", pa.int32(), nullable=False),
    pa.field("visual_face_flags", pa.large_binary(), nullable=False),  # since version 2
]
# Feature columns that version-1 shards lack; readers select them only where present.
FEATURE_COLUMNS_SINCE_V2: tuple[str, ...] = ("visual_face_flags",)
SPEAKER_COLUMN = "speaker"  # since version 3: the manifest's speaker, null when unknown
KEY_COLUMNS: tuple[str, ...] = tuple(field.name for field in _KEY_FIELDS)
FEATURE_COLUMNS: tuple[str, ...] = tuple(field.name for field in _FEATURE_FIELDS)

_CLIP_FIELDS: list[pa.Field] = [
    *_KEY_FIELDS,
    pa.field("split", pa.string()),
    pa.field(SPEAKER_COLUMN, pa.string()),
    *_FEATURE_FIELDS,
    pa.field("face_ratio", pa.float32(), nullable=False),
    pa.field("audio_active_ratio", pa.float32(), nullable=False),  # not silent (version >= 2)
    *[pa.field(emotion, pa.float32()) for emotion in EMOTIONS],
    pa.field("schema_version", pa.int32(), nullable=False),
]


def _with_metadata(
    fields: list[pa.Field], kind: str, version: int, config: dict[str, Any]
) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={
            META_KIND: kind.encode(),
            META_SCHEMA_VERSION: str(version).encode(),
            META_CODE_VERSION: __version__.encode(),
            META_CONFIG: json.dumps(config, sort_keys=True).encode(),
        },
    )


def clip_schema(extractor_config: dict[str, Any] | None = None) -> pa.Schema:
    """The clip-shard schema, with the extractor config and code version in its metadata."""
    return _with_metadata(_CLIP_FIELDS, "clips", CLIP_SCHEMA_VERSION, extractor_config or {})


def prob_column(condition: str, emotion: str) -> str:
    """Label-shard column holding P(emotion) under an input condition, e.g. `prob_av_happiness`."""
    return f"prob_{condition}_{emotion}"


_LABEL_FIELDS: list[pa.Field] = [
    *_KEY_FIELDS,
    pa.field("modalities", pa.string(), nullable=False),
    *[pa.field(prob_column(c, e), pa.float32()) for c in CONDITIONS for e in EMOTIONS],
    pa.field("tags", pa.list_(pa.string()), nullable=False),
    pa.field("tags_condition", pa.string()),  # null when no condition of the model could run
    pa.field("conditions", pa.list_(pa.string()), nullable=False),  # the conditions that ran
    # why the clip's video gave the model no visual input (null when it did or has no video)
    pa.field("visual_reason", pa.string()),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("model_run_id", pa.string(), nullable=False),
    pa.field("schema_version", pa.int32(), nullable=False),
]


def label_schema(config: dict[str, Any] | None = None) -> pa.Schema:
    """The label-shard schema, with the labelling config in its metadata."""
    return _with_metadata(_LABEL_FIELDS, "labels", LABEL_SCHEMA_VERSION, config or {})


MEDIA_SCHEMA_VERSION = 1

# One row per media file and labelling: the file's tags over its clips (pipelines/label/summary.py).
_MEDIA_FIELDS: list[pa.Field] = [
    pa.field("media_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("modalities", pa.string(), nullable=False),  # audio+visual | audio | visual (the file)
    pa.field("clips", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),  # first clip start
    pa.field("end_s", pa.float64(), nullable=False),  # last clip end
    *[pa.field(f"max_prob_{e}", pa.float32(), nullable=False) for e in EMOTIONS],
    *[pa.field(f"mean_prob_{e}", pa.float32(), nullable=False) for e in EMOTIONS],
    *[pa.field(f"tag_share_{e}", pa.float32(), nullable=False) for e in EMOTIONS],
    pa.field("tags", pa.list_(pa.string()), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("model_run_id", pa.string(), nullable=False),
    pa.field("labelled_at", pa.timestamp("s", tz="UTC"), nullable=False),
    pa.field("schema_version", pa.int32(), nullable=False),
]


def media_schema(config: dict[str, Any] | None = None) -> pa.Schema:
    """The media-summary schema, with the labelling config in its metadata."""
    return _with_metadata(_MEDIA_FIELDS, "media_labels", MEDIA_SCHEMA_VERSION, config or {})


def media_id_for(source_uri: str) -> str:
    """Stable id of a media file: the same URI always maps to the same id."""
    return hashlib.sha1(source_uri.encode()).hexdigest()[:16]


def clip_id_for(source_uri: str, start_s: float, end_s: float) -> str:
    """Deterministic clip id from the source and its time span (millisecond resolution)."""
    span = f"{source_uri}|{round(start_s * 1000)}|{round(end_s * 1000)}"
    return hashlib.sha1(span.encode()).hexdigest()[:20]


def modalities_name(has_audio: bool, has_visual: bool) -> str:
    """`audio+visual`, `audio` or `visual`: what a clip actually has (label-shard contract)."""
    if has_audio and has_visual:
        return "audio+visual"
    if has_audio:
        return "audio"
    if has_visual:
        return "visual"
    raise ValueError("a clip has neither audio nor visual features")
