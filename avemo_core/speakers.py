"""Speaker-level standardisation of the utterance functionals (`functionals_norm="speaker"`).

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
    centre: np.ndarray  # (S, K) float32
    scale: np.ndarray  # (S, K) float32, floored

    def lookup(self, speakers: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) centre and scale per clip; NaN rows for an unknown speaker."""
        index = {name: i for i, name in enumerate(self.speakers)}
        width = self.centre.shape[1]
        centre = np.full((len(speakers), width), np.nan, np.float32)
        scale = np.full((len(speakers), width), np.nan, np.float32)
        for row, name in enumerate(speakers):
            i = index.get(name) if name is not None else None
            if i is not None:
                centre[row], scale[row] = self.centre[i], self.scale[i]
        return centre, scale

    def attach(self, batch: Batch, speakers: Sequence[str | None]) -> Batch:
        """The batch with its clips' speaker statistics (the model reads them)."""
        centre, scale = self.lookup(speakers)
        batch.functionals_centre = torch.from_numpy(centre)
        batch.functionals_scale = torch.from_numpy(scale)
        return batch

    def to_dict(self) -> dict[str, list]:
        return {
            "speakers": list(self.speakers),
            "centre": self.centre.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> SpeakerTable:
        return cls(
            tuple(data["speakers"]),
            np.asarray(data["centre"], np.float32),
            np.asarray(data["scale"], np.float32),
        )


def fit_speaker_table(
    chunks: Iterable[tuple[Sequence[str | None], Batch]], prior_clips: float = PRIOR_CLIPS
) -> SpeakerTable | None:
    """The table of every named speaker in `chunks` ((speakers, batch) pairs); None when no clip
    with audio has a speaker. Sums are float64."""
    sums: dict[str, list] = {}  # speaker -> [count, sum (K,), sum of squares (K,)]
    for speakers, batch in chunks:
        has_audio, values = raw_functionals(batch)
        named = [s for s, audio in zip(speakers, has_audio, strict=True) if audio]
        for name, row in zip(named, values, strict=True):
            if name is None:
                continue
            entry = sums.setdefault(name, [0, np.zeros_like(row), np.zeros_like(row)])
            entry[0] += 1
            entry[1] += row
            entry[2] += row**2
    if not sums:
        return None
    count = sum(entry[0] for entry in sums.values())
    pooled_mean = sum(entry[1] for entry in sums.values()) / count  # (K,)
    pooled_var = np.maximum(sum(entry[2] for entry in sums.values()) / count - pooled_mean**2, 0)
    names = sorted(sums)
    centres, scales = [], []
    for name in names:
        n, total, squares = sums[name]
        mean = total / n
        var = np.maximum(squares / n - mean**2, 0.0)
        centres.append((n * mean + prior_clips * pooled_mean) / (n + prior_clips))
        spread = (n * var + prior_clips * pooled_var) / (n + prior_clips)
        scales.append(np.maximum(np.sqrt(spread), _FLOOR))
    return SpeakerTable(
        tuple(names), np.asarray(centres, np.float32), np.asarray(scales, np.float32)
    )
