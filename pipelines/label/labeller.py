"""Model inference for labelling: clip-shard columns in, label-shard columns out.

`Labeller` is the Ray Data callable class (Ray's batch-inference pattern): each actor loads the
pinned model version once in `__init__`, from its node's download cache (`pipelines.model_uri`),
and runs `__call__` under `torch.inference_mode()`. The labelling itself is the shared inference
core (`avemo_core.inference`), as in the pyfunc model and evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from avemo_core import inference
from avemo_core.checkpoint import Checkpoint, load_checkpoint
from avemo_core.data import batch_from_columns, visual_reason
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import (
    KEY_COLUMNS,
    LABEL_SCHEMA_VERSION,
    modalities_name,
    prob_column,
)
from avemo_core.speakers import SpeakerTable, speakers_of

# Extra column a pipeline may attach: how many clips the row's media has (passed through).
MEDIA_CLIPS_COLUMN = "media_clips"


def label_columns(
    checkpoint: Checkpoint,
    columns: Mapping[str, Any],
    model_info: Mapping[str, str],
    device: torch.device,
    max_frames: tuple[int, int],
    speakers: SpeakerTable | None = None,
) -> dict[str, np.ndarray]:
    """Label-shard columns (plus `media_clips` when given) for a batch of clip-shard columns.

    Probabilities only for the conditions the model serves (others stay NaN, null on disk);
    `conditions` lists what ran on each row, `tags_condition` the one its tags come from.
    `speakers`: the input's speaker statistics, for rows whose `speaker` column names one.
    """
    batch = batch_from_columns(columns, max_frames[0], max_frames[1])
    if speakers is not None:
        batch = speakers.attach(batch, speakers_of(columns))
    batch = batch.to(device)
    result = inference.infer(
        checkpoint.model, batch, checkpoint.conditions, checkpoint.thresholds, checkpoint.labels
    )
    has_audio = np.asarray(columns["has_audio"], bool)
    has_visual = np.asarray(columns["has_visual"], bool)
    size = len(has_audio)
    out: dict[str, np.ndarray] = {key: np.asarray(columns[key]) for key in KEY_COLUMNS}
    out["modalities"] = np.array(
        [modalities_name(a, v) for a, v in zip(has_audio, has_visual, strict=True)], dtype=object
    )
    not_run = np.full((size, len(EMOTIONS)), np.nan, np.float32)  # (B, E)
    for condition in CONDITIONS:
        probs = result.probs.get(condition, not_run)  # (B, E)
        for e, emotion in enumerate(EMOTIONS):
            out[prob_column(condition, emotion)] = probs[:, e]  # (B,)
    out["tags"] = _objects(result.tags)
    out["tags_condition"] = np.array(result.tags_condition, dtype=object)
    out["conditions"] = _objects(result.ran)
    frames = np.asarray(columns["visual_frames"], np.int64)
    out["visual_reason"] = np.array(
        [visual_reason(v, int(n)) for v, n in zip(has_visual, frames, strict=True)], dtype=object
    )
    for key in ("model_name", "model_version", "model_run_id"):
        out[key] = np.full(size, model_info[key], dtype=object)
    out["schema_version"] = np.full(size, LABEL_SCHEMA_VERSION, np.int32)
    if MEDIA_CLIPS_COLUMN in columns:
        out[MEDIA_CLIPS_COLUMN] = np.asarray(columns[MEDIA_CLIPS_COLUMN], np.int64)
    return out


def _objects(lists: list[list[str]]) -> np.ndarray:
    """(B,) object array of lists (np.array would make a 2-D array of equal-length lists)."""
    out = np.empty(len(lists), dtype=object)
    for i, value in enumerate(lists):
        out[i] = value
    return out


def pick_device(device: str) -> torch.device:
    """`auto` means the GPU when this process has one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Labeller:
    """Ray Data callable class: loads the pinned checkpoint once per actor, labels batches."""

    def __init__(
        self,
        model_uri: str,
        model_info: dict[str, str],
        tracking_uri: str | None = None,
        cache_dir: str | None = None,
        device: str = "auto",
        max_frames: tuple[int, int] = (3000, 150),
        speakers: dict[str, list] | None = None,
    ) -> None:
        """`model_uri` is pinned (models:/NAME/VERSION, runs:/RUN/PATH or a checkpoint folder
        every node can read); a download is made once per node and cache."""
        from pipelines.model_uri import load_pinned

        self.device = pick_device(device)
        directory = load_pinned(model_uri, tracking_uri, cache_dir)
        self.checkpoint = load_checkpoint(directory, map_location=str(self.device))
        self.model_info = dict(model_info)
        self.max_frames = max_frames
        self.speakers = SpeakerTable.from_dict(speakers) if speakers else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return label_columns(
            self.checkpoint, batch, self.model_info, self.device, self.max_frames, self.speakers
        )
