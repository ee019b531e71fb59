"""Cross-fitted ensembles (`TrainConfig.cross_fit`): each member also trains on the valid split,
less one fold of its speakers, and is validated on the fold it never saw.

Why: on a small corpus the valid split's speakers are a large share of all speakers, and a model
that never trains on them learns from fewer voices. With K members the valid split's named
speakers, sorted, go to folds round robin (speaker i to fold i % K); a valid clip without a
speaker goes to fold sha256(clip_id) % K. Member k trains on the train split and on every valid
fold but k (`Batch.holdout`: the fold of each row, -1 for train rows; `colearning_loss` leaves
member k's held-out rows out of its loss), so the ensemble sees every speaker, and every valid
clip still has one member that never saw it. Validation scores each valid clip by that member
alone (out-of-fold), so the selection score and the thresholds tuned on it stay honest; the
ensemble mean (inference, labelling, evaluation) is unchanged. The folds depend on the valid
split alone (deterministic, speaker-disjoint), so a resumed run gets the same ones. The
normalisation statistics and the speaker table use every training row, valid ones included:
they use no labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from avemo_core import inference
from avemo_core.config import require
from avemo_core.data import NO_HOLDOUT, Batch
from avemo_core.ensemble import Model, networks
from avemo_core.speakers import speakers_of


def require_ensemble(members: int) -> None:
    """ConfigError unless there are members to cross-fit: one network cannot hold a fold out."""
    require(members >= 2, f"cross_fit needs an ensemble: members must be >= 2, got {members}")


def clip_fold(clip_id: str, members: int) -> int:
    """The fold of a valid clip without a speaker: stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") % members


@dataclasses.dataclass(frozen=True)
class Folds:
    """Which valid speakers each member holds out; recorded in checkpoints and the run record."""

    members: int  # K: folds, one per member
    speakers: dict[str, int]  # valid speaker -> fold (the member that holds it out)

    @classmethod
    def of(cls, valid_speakers: Iterable[str | None], members: int) -> Folds:
        """Folds of the named valid speakers, sorted, round robin (unnamed clips: by clip_id)."""
        require_ensemble(members)
        names = sorted({name for name in valid_speakers if name is not None})
        return cls(members, {name: i % members for i, name in enumerate(names)})

    def holdout(
        self, splits: Sequence[str], speakers: Sequence[str | None], clip_ids: Sequence[str]
    ) -> np.ndarray:
        """(B,) int64 fold per row: -1 outside the valid split, else its speaker's (or clip's)."""
        folds = np.full(len(splits), NO_HOLDOUT, np.int64)
        for i, (split, speaker, clip_id) in enumerate(zip(splits, speakers, clip_ids, strict=True)):
            if split != "valid":
                continue
            if speaker is None:
                folds[i] = clip_fold(clip_id, self.members)
            elif speaker in self.speakers:
                folds[i] = self.speakers[speaker]
            else:
                raise ValueError(f"valid speaker {speaker!r} is not in the cross-fit folds")
        return folds

    def held_out(self) -> list[list[str]]:
        """Per member, the valid speakers it holds out (sorted)."""
        return [sorted(s for s, f in self.speakers.items() if f == k) for k in range(self.members)]

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "held_out": self.held_out()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Folds:
        speakers = {name: k for k, names in enumerate(data["held_out"]) for name in names}
        return cls(int(data["members"]), speakers)


def out_of_fold_probabilities(
    model: Model, batch: Batch, conditions: Sequence[str]
) -> dict[str, np.ndarray]:
    """condition -> (B, E) probabilities of the member that held each row out (`Batch.holdout`);
    a row no member held out (NO_HOLDOUT) gets the members' mean, as the ensemble gives it."""
    per_member = [inference.probabilities(m, batch, conditions) for m in networks(model)]
    holdout = batch.holdout.cpu().numpy()  # (B,)
    rows = np.arange(len(batch))
    out: dict[str, np.ndarray] = {}
    for condition in conditions:
        stacked = np.stack([probs[condition] for probs in per_member])  # (K, B, E)
        chosen = stacked[np.clip(holdout, 0, None), rows]  # (B, E)
        out[condition] = np.where((holdout >= 0)[:, None], chosen, stacked.mean(axis=0))
    return out


def holdout_tensor(folds: Folds, columns: dict[str, Any]) -> torch.Tensor:
    """(B,) long holdout of a columnar chunk of clip rows (split, speaker, clip_id columns)."""
    holdout = folds.holdout(list(columns["split"]), speakers_of(columns), columns["clip_id"])
    return torch.from_numpy(holdout)
