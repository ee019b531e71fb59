"""Speaker-level standardisation of the utterance functionals (`functionals_norm="speaker"`) and
of the input log-mel (`audio_norm="speaker"`).

Why: who speaks moves a clip's statistics (pitch range, vocal tract, microphone) as much as what
they feel. Standardising each clip's functionals by its own speaker's mean and spread over all of
that speaker's clips (no labels used) leaves what differs between the clips of one speaker, which
is what emotion changes. On RAVDESS speech it is the largest gain measured: five-fold
cross-validation over the 20 train and valid actors (docs/results_real_speech.md).

A speaker's statistics are shrunk towards those of all clips in the table by `prior_clips`
pseudo-clips, so a speaker with few clips is standardised mostly like the rest. A clip whose
speaker is unknown (no manifest speaker, or not in the table) gets NaN rows; the model then
standardises it with the training split's statistics, as without speakers. Functionals here come
from the unnormalised log-mel: the model's corpus normalisation is the same affine map for every
clip, so standardising per speaker gives the same values either way, and the table needs no model.
The input statistics are each speaker's per-bin mean and spread of the log-mel over every frame
of its clips, shrunk the same way (tables saved before them have none: the corpus's instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from avemo_core.data import Batch
from avemo_core.functionals import utterance_functionals
from avemo_core.schema import SPEAKER_COLUMN

PRIOR_CLIPS = 8.0  # pseudo-clips of the pooled statistics in each speaker's estimate
_FLOOR = 1e-3  # smallest standard deviation used to divide (as FunctionalsHead's)


def speakers_of(columns: Mapping[str, Any]) -> list[str | None]:
    """Each row's speaker in a columnar chunk of clip rows; all None without the column (shards
    before schema 3)."""
    size = len(columns["has_audio"])
    return list(columns[SPEAKER_COLUMN]) if SPEAKER_COLUMN in columns else [None] * size


def raw_functionals(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """(B,) bool rows with audio and their (B', K) functionals of the unnormalised log-mel."""
    has_audio = batch.audio_mask.any(dim=1)  # (B,)
    audio, mask = batch.audio[has_audio], batch.audio_mask[has_audio]
    functionals = utterance_functionals(audio, mask) if audio.shape[0] else None
    width = functionals.shape[1] if functionals is not None else 0
    values = functionals.double().numpy() if functionals is not None else np.zeros((0, width))
    return has_audio.numpy(), values


@dataclasses.dataclass(frozen=True)
class SpeakerTable:
    """Per speaker, the centre and scale that standardise its clips' functionals."""

    speakers: tuple[str, ...]
    centre: np.ndarray  # (S, K) float32: of the functionals
    scale: np.ndarray  # (S, K) float32, floored
    audio_centre: np.ndarray | None = None  # (S, F) float32: of the log-mel frames, per bin
    audio_scale: np.ndarray | None = None  # (S, F) float32, floored

    def lookup(self, speakers: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) centre and scale per clip; NaN rows for an unknown speaker."""
        return self._rows(speakers, self.centre, self.scale)

    def lookup_audio(self, speakers: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray] | None:
        """(B, F) log-mel centre and scale per clip (NaN rows: unknown); None without them."""
        if self.audio_centre is None or self.audio_scale is None:
            return None
        return self._rows(speakers, self.audio_centre, self.audio_scale)

    def _rows(
        self, speakers: Sequence[str | None], centre: np.ndarray, scale: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        index = {name: i for i, name in enumerate(self.speakers)}
        rows = [index.get(name) if name is not None else None for name in speakers]
        out = np.full((2, len(speakers), centre.shape[1]), np.nan, np.float32)
        for row, i in enumerate(rows):
            if i is not None:
                out[0, row], out[1, row] = centre[i], scale[i]
        return out[0], out[1]

    def attach(self, batch: Batch, speakers: Sequence[str | None]) -> Batch:
        """The batch with its clips' speaker statistics (the model reads them)."""
        centre, scale = self.lookup(speakers)
        batch.functionals_centre = torch.from_numpy(centre)
        batch.functionals_scale = torch.from_numpy(scale)
        audio = self.lookup_audio(speakers)
        if audio is not None:
            batch.audio_centre, batch.audio_scale = (torch.from_numpy(a) for a in audio)
        return batch

    def to_dict(self) -> dict[str, list]:
        out = {
            "speakers": list(self.speakers),
            "centre": self.centre.tolist(),
            "scale": self.scale.tolist(),
        }
        if self.audio_centre is not None and self.audio_scale is not None:
            out["audio_centre"], out["audio_scale"] = (
                self.audio_centre.tolist(),
                self.audio_scale.tolist(),
            )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> SpeakerTable:
        audio = [
            np.asarray(data[key], np.float32) if key in data else None
            for key in ("audio_centre", "audio_scale")
        ]
        return cls(
            tuple(data["speakers"]),
            np.asarray(data["centre"], np.float32),
            np.asarray(data["scale"], np.float32),
            *audio,
        )


class _Moments:
    """Running count and float64 sums of rows and their squares, per speaker."""

    def __init__(self) -> None:
        self.sums: dict[str, list] = {}  # speaker -> [clips, rows, sum, sum of squares]

    def add(self, name: str, rows: np.ndarray) -> None:
        """One clip's (N, K) rows."""
        entry = self.sums.setdefault(name, [0, 0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += rows.shape[0]
        entry[2] = entry[2] + rows.sum(axis=0)
        entry[3] = entry[3] + (rows**2).sum(axis=0)

    def shrunk(self, names: list[str], prior_clips: float) -> tuple[np.ndarray, np.ndarray]:
        """(S, K) centre and floored scale per speaker of `names`: its own mean and variance
        pulled towards all rows' by `prior_clips` pseudo-clips."""
        entries = [self.sums[name] for name in names]
        count = sum(entry[1] for entry in entries)
        pooled_mean = sum(entry[2] for entry in entries) / count  # (K,)
        pooled_var = np.maximum(sum(entry[3] for entry in entries) / count - pooled_mean**2, 0)
        centres, scales = [], []
        for clips, rows, total, squares in entries:
            mean = total / rows
            var = np.maximum(squares / rows - mean**2, 0.0)
            centres.append((clips * mean + prior_clips * pooled_mean) / (clips + prior_clips))
            spread = (clips * var + prior_clips * pooled_var) / (clips + prior_clips)
            scales.append(np.maximum(np.sqrt(spread), _FLOOR))
        return np.asarray(centres, np.float32), np.asarray(scales, np.float32)


def fit_speaker_table(
    chunks: Iterable[tuple[Sequence[str | None], Batch]], prior_clips: float = PRIOR_CLIPS
) -> SpeakerTable | None:
    """The table of every named speaker in `chunks` ((speakers, batch) pairs); None when no clip
    with audio has a speaker. Sums are float64."""
    functionals, frames = _Moments(), _Moments()
    for speakers, batch in chunks:
        has_audio, values = raw_functionals(batch)
        rows = np.flatnonzero(has_audio)
        for name, row, values_row in zip((speakers[i] for i in rows), rows, values, strict=True):
            if name is None:
                continue
            functionals.add(name, values_row[None])
            frames.add(name, batch.audio[row][batch.audio_mask[row]].double().numpy())
    if not functionals.sums:
        return None
    names = sorted(functionals.sums)
    return SpeakerTable(
        tuple(names),
        *functionals.shrunk(names, prior_clips),
        *frames.shrunk(names, prior_clips),
    )
