"""From clip-shard rows to padded, masked model batches.

Ray Data (`iter_batches(batch_format="numpy")`), plain pyarrow and tests all hand over columns as a
mapping of name -> numpy array; `batch_from_columns` is the one place that turns them into tensors.

Only face frames reach the model: a frame whose `visual_face_flags` entry is 0 (no face) is masked
out of `visual_mask`, so a clip without any face frame has no visual input (`Batch.has_visual`
false) and runs as audio-only. Version-1 shards have no flags: all their frames count, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from avemo_core.labels import EMOTIONS
from avemo_core.schema import AUDIO_DTYPE, FACE_FLAGS_DTYPE, VISUAL_DTYPE

NO_FACE_REASON = "no face in any sampled frame"  # label rows' `visual_reason`
NO_HOLDOUT = -1  # `Batch.holdout` of a row every ensemble member trains on


@dataclasses.dataclass
class Batch:
    """A padded batch. Masks are True on real frames; an absent modality has an all-False mask."""

    audio: torch.Tensor  # (B, Ta, F) float32 log-mel
    audio_mask: torch.Tensor  # (B, Ta) bool
    visual: torch.Tensor  # (B, Tv, H, W) float32 in [0, 1]
    visual_mask: torch.Tensor  # (B, Tv) bool
    labels: torch.Tensor  # (B, E) float32 in {0, 1}
    label_known: torch.Tensor  # (B,) bool: False for clips with no labelled emotion
    # (B, E) bool: False where an emotion is unlabelled (a corpus that does not annotate it);
    # None: every emotion of a known clip is labelled.
    label_mask: torch.Tensor | None = None
    # (B, K) centre and scale of each clip's speaker for the utterance functionals, NaN rows where
    # the speaker is unknown; None: no speaker statistics (avemo_core/speakers.py)
    functionals_centre: torch.Tensor | None = None
    functionals_scale: torch.Tensor | None = None
    # (B, F) per-bin centre and scale of each clip's speaker for the input log-mel (same rules)
    audio_centre: torch.Tensor | None = None
    audio_scale: torch.Tensor | None = None
    # (B,) long: the ensemble member that leaves each row out of its loss (a cross-fit valid
    # row's fold, avemo_core/crossfit.py); None: NO_HOLDOUT for every row
    holdout: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.label_mask is None:
            self.label_mask = self.label_known[:, None].expand_as(self.labels).clone()
        if self.holdout is None:
            device = self.labels.device
            self.holdout = torch.full((len(self),), NO_HOLDOUT, dtype=torch.long, device=device)

    @property
    def has_audio(self) -> torch.Tensor:  # (B,) bool
        return self.audio_mask.any(dim=1)

    @property
    def has_visual(self) -> torch.Tensor:  # (B,) bool
        return self.visual_mask.any(dim=1)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def _tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor field by name (the optional ones only when set)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: value for name, value in values.items() if value is not None}

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        tensors = self._tensors().items()
        return Batch(**{k: v.to(device, non_blocking=non_blocking) for k, v in tensors})

    def pin_memory(self) -> Batch:
        return Batch(**{name: value.pin_memory() for name, value in self._tensors().items()})


def decode_audio(blob: bytes, frames: int, dims: int) -> np.ndarray:
    """(frames, dims) float16 view of a clip-shard audio blob."""
    return np.frombuffer(blob, dtype=AUDIO_DTYPE, count=frames * dims).reshape(frames, dims)


def decode_visual(blob: bytes, frames: int, height: int, width: int) -> np.ndarray:
    """(frames, height, width) uint8 view of a clip-shard visual blob."""
    return np.frombuffer(blob, dtype=VISUAL_DTYPE, count=frames * height * width).reshape(
        frames, height, width
    )


def face_frames(blob: bytes | None, frames: int) -> np.ndarray:
    """(frames,) bool: which visual frames show a face. No blob (a version-1 shard): all do."""
    if blob is None:
        return np.ones(frames, bool)
    flags = np.frombuffer(blob, dtype=FACE_FLAGS_DTYPE)
    if flags.shape[0] != frames:
        raise ValueError(f"visual_face_flags holds {flags.shape[0]} flags for {frames} frames")
    return flags > 0


def visual_reason(has_visual: bool, visual_frames: int) -> str | None:
    """Why a clip with video frames has no visual input for the model (None: not the case).

    Extraction writes `has_visual` false, keeping the frames, when no sampled frame shows a face.
    """
    return NO_FACE_REASON if not has_visual and visual_frames > 0 else None


def _label_arrays(columns: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, E) 0/1 labels and (B, E) labelled flags from the per-emotion intensity columns.

    Labelled is per emotion: a corpus that does not annotate surprise leaves it null, and its
    clips still teach the other five."""
    if not all(e in columns for e in EMOTIONS):
        return np.zeros((size, len(EMOTIONS)), np.float32), np.zeros((size, len(EMOTIONS)), bool)
    intensity = np.stack(
        [np.asarray(columns[e], dtype=np.float64) for e in EMOTIONS], axis=1
    )  # (B, E), NaN where unlabelled
    labelled = ~np.isnan(intensity)  # (B, E)
    labels = np.where(labelled, intensity > 0.0, 0.0).astype(np.float32)
    return labels, labelled


def batch_from_columns(
    columns: Mapping[str, Any],
    max_audio_frames: int | None = None,
    max_visual_frames: int | None = None,
) -> Batch:
    """Pad a columnar chunk of clip rows into a Batch; frames beyond the optional caps are cut."""
    size = len(columns["audio_frames"])
    audio_list: list[np.ndarray] = []
    visual_list: list[np.ndarray] = []
    valid_list: list[np.ndarray] = []
    flag_blobs = columns.get("visual_face_flags")  # absent in version-1 shards
    for i in range(size):
        has_audio = bool(columns["has_audio"][i])
        has_visual = bool(columns["has_visual"][i])
        audio = (
            decode_audio(
                columns["audio_features"][i],
                int(columns["audio_frames"][i]),
                int(columns["audio_dims"][i]),
            )
            if has_audio
            else np.zeros((0, int(columns["audio_dims"][i]) or 80), np.float16)
        )
        visual = (
            decode_visual(
                columns["visual_features"][i],
                int(columns["visual_frames"][i]),
                int(columns["visual_height"][i]),
                int(columns["visual_width"][i]),
            )
            if has_visual
            else np.zeros(
                (0, int(columns["visual_height"][i]) or 64, int(columns["visual_width"][i]) or 64),
                np.uint8,
            )
        )
        valid = (
            face_frames(None if flag_blobs is None else flag_blobs[i], visual.shape[0])
            if has_visual
            else np.zeros(0, bool)
        )  # (Tv,) bool
        audio_list.append(audio[:max_audio_frames] if max_audio_frames else audio)
        visual_list.append(visual[:max_visual_frames] if max_visual_frames else visual)
        valid_list.append(valid[:max_visual_frames] if max_visual_frames else valid)
    labels, labelled = _label_arrays(columns, size)
    return collate(audio_list, visual_list, labels, labelled, valid_list)


def collate(
    audio: Sequence[np.ndarray],
    visual: Sequence[np.ndarray],
    labels: np.ndarray,
    label_known: np.ndarray | None = None,
    visual_valid: Sequence[np.ndarray] | None = None,
) -> Batch:
    """Pad per-sample (T, F) audio and (T, H, W) visual arrays; empty = modality absent.

    `visual_valid`: per sample, (T,) bool frames the model may see (face frames); default all.
    """
    size = len(audio)
    feat_dims = max((a.shape[1] for a in audio), default=80)
    height, width = next(((v.shape[1], v.shape[2]) for v in visual if v.ndim == 3), (64, 64))
    max_ta = max(1, max((a.shape[0] for a in audio), default=1))
    max_tv = max(1, max((v.shape[0] for v in visual), default=1))
    audio_out = np.zeros((size, max_ta, feat_dims), np.float32)  # (B, Ta, F)
    audio_mask = np.zeros((size, max_ta), bool)  # (B, Ta)
    visual_out = np.zeros((size, max_tv, height, width), np.float32)  # (B, Tv, H, W)
    visual_mask = np.zeros((size, max_tv), bool)  # (B, Tv)
    for i, (a, v) in enumerate(zip(audio, visual, strict=True)):
        audio_out[i, : a.shape[0]] = a
        audio_mask[i, : a.shape[0]] = True
        visual_out[i, : v.shape[0]] = v.astype(np.float32) / 255.0
        visual_mask[i, : v.shape[0]] = True if visual_valid is None else visual_valid[i]
    num_labels = np.shape(labels)[1] if np.ndim(labels) == 2 else len(EMOTIONS)
    known = np.ones(size, bool) if label_known is None else np.asarray(label_known, bool)
    mask = np.broadcast_to(known[:, None], (size, num_labels)) if known.ndim == 1 else known
    return Batch(
        audio=torch.from_numpy(audio_out),
        audio_mask=torch.from_numpy(audio_mask),
        visual=torch.from_numpy(visual_out),
        visual_mask=torch.from_numpy(visual_mask),
        labels=torch.from_numpy(np.asarray(labels, np.float32)),
        label_known=torch.from_numpy(np.ascontiguousarray(mask.any(axis=1))),
        label_mask=torch.from_numpy(np.ascontiguousarray(mask)),
    )
