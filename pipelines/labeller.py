"""Model inference for labelling: clip-shard columns in, label-shard columns out.

`Labeller` is the Ray Data callable class (Ray's batch-inference pattern): each actor rebuilds the
checkpoint once in `__init__` from bytes shipped with the actor (so no node needs the driver's
disk) and runs `__call__` under `torch.inference_mode()`. Each modality is encoded once per batch
and fused three ways, so the av, a and v conditions cost one encoder pass plus three cheap heads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avemo_core import metrics
from avemo_core.checkpoint import Checkpoint, load_checkpoint
from avemo_core.data import batch_from_columns, visual_reason
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS, EMOTIONS
from avemo_core.model import CrossModalTransformer
from avemo_core.schema import (
    KEY_COLUMNS,
    LABEL_SCHEMA_VERSION,
    modalities_name,
    prob_column,
)

# Extra column a pipeline may attach: how many clips the row's media has (passed through).
MEDIA_CLIPS_COLUMN = "media_clips"


def read_checkpoint_files(directory: str | Path) -> dict[str, bytes]:
    """A checkpoint directory as {file name: bytes}, to ship to actors on other nodes."""
    root = Path(directory)
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def fullest_condition(has_audio: bool, has_visual: bool) -> str:
    """The condition that uses everything a clip has: av, else a, else v."""
    if has_audio and has_visual:
        return "av"
    return "a" if has_audio else "v"


@torch.inference_mode()
def condition_probabilities(
    model: CrossModalTransformer,
    columns: Mapping[str, Any],
    device: torch.device,
    max_frames: tuple[int, int],
) -> dict[str, np.ndarray]:
    """condition -> (B, E) float32 probabilities, NaN on rows that lack a modality it needs."""
    batch = batch_from_columns(columns, max_frames[0], max_frames[1]).to(device)
    has = {"audio": batch.has_audio, "visual": batch.has_visual}  # (B,) bool each
    audio = model.encode_audio(batch.audio, batch.audio_mask) if bool(has["audio"].any()) else None
    visual = (
        model.encode_visual(batch.visual, batch.visual_mask) if bool(has["visual"].any()) else None
    )
    size = len(batch)
    out: dict[str, np.ndarray] = {}
    for condition in CONDITIONS:
        use_audio, use_visual = CONDITION_MODALITIES[condition]
        rows = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
        if use_audio:
            rows &= has["audio"]
        if use_visual:
            rows &= has["visual"]
        probs = np.full((size, len(EMOTIONS)), np.nan, np.float32)  # (B, E)
        if bool(rows.any()):
            logits = model.fuse(audio if use_audio else None, visual if use_visual else None)
            probs[:] = torch.sigmoid(logits.float()).cpu().numpy()
            probs[~rows.cpu().numpy()] = np.nan
        out[condition] = probs
    return out


def label_columns(
    checkpoint: Checkpoint,
    columns: Mapping[str, Any],
    model_info: Mapping[str, str],
    device: torch.device,
    max_frames: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Label-shard columns (plus `media_clips` when given) for a batch of clip-shard columns."""
    probs = condition_probabilities(checkpoint.model, columns, device, max_frames)
    has_audio = np.asarray(columns["has_audio"], bool)
    has_visual = np.asarray(columns["has_visual"], bool)
    size = len(has_audio)
    thresholds = {
        c: np.asarray(checkpoint.thresholds.get(c, [metrics.FALLBACK_THRESHOLD] * len(EMOTIONS)))
        for c in CONDITIONS
    }
    decided = {
        c: metrics.decide(np.nan_to_num(probs[c], nan=-1.0), thresholds[c]) for c in CONDITIONS
    }
    fullest = [fullest_condition(a, v) for a, v in zip(has_audio, has_visual, strict=True)]
    tags = np.empty(size, dtype=object)
    for i, condition in enumerate(fullest):
        tags[i] = [EMOTIONS[e] for e in np.flatnonzero(decided[condition][i])]
    out: dict[str, np.ndarray] = {key: np.asarray(columns[key]) for key in KEY_COLUMNS}
    out["modalities"] = np.array(
        [modalities_name(a, v) for a, v in zip(has_audio, has_visual, strict=True)], dtype=object
    )
    for condition in CONDITIONS:
        for e, emotion in enumerate(EMOTIONS):
            out[prob_column(condition, emotion)] = probs[condition][:, e]  # (B,)
    out["tags"] = tags
    out["tags_condition"] = np.array(fullest, dtype=object)
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


def pick_device(device: str) -> torch.device:
    """`auto` means the GPU when this process has one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Labeller:
    """Ray Data callable class: loads the pinned checkpoint once per actor, labels batches."""

    def __init__(
        self,
        checkpoint_files: dict[str, bytes],
        model_info: dict[str, str],
        device: str = "auto",
        max_frames: tuple[int, int] = (3000, 150),
    ) -> None:
        self.device = pick_device(device)
        with tempfile.TemporaryDirectory(prefix="avemo-ckpt-") as tmp:
            for name, data in checkpoint_files.items():
                (Path(tmp) / Path(name).name).write_bytes(data)
            self.checkpoint = load_checkpoint(tmp, map_location=str(self.device))
        self.model_info = dict(model_info)
        self.max_frames = max_frames

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return label_columns(self.checkpoint, batch, self.model_info, self.device, self.max_frames)
