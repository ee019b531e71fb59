"""The one inference core: which conditions run on which rows, probabilities, thresholds, tags.

The Ray labeller, the MLflow pyfunc model and evaluation all label through `infer`, so they cannot
disagree. A model serves only its own conditions (`Checkpoint.conditions`: those it was trained
and validated on); on a row, a condition runs when the model serves it and the row has every
modality it needs. Each modality is encoded once per batch and fused once per condition, so
av, a and v together cost one encoder pass plus three cheap fusions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from avemo_core.data import Batch
from avemo_core.ensemble import Model
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS
from avemo_core.metrics import decide


@dataclasses.dataclass
class Inference:
    """What a batch was labelled with; rows in batch order."""

    probs: dict[str, np.ndarray]  # served condition -> (B, E) float32, NaN where it did not run
    tags: list[list[str]]  # emotions over threshold under the fullest condition that ran
    tags_condition: list[str | None]  # that condition; None when none could run on the row
    ran: list[list[str]]  # conditions that ran on each row, in CONDITIONS order


def can_form(has_audio: np.ndarray, has_visual: np.ndarray, condition: str) -> np.ndarray:
    """(B,) bool: rows that have every modality `condition` needs."""
    needs_audio, needs_visual = CONDITION_MODALITIES[condition]
    rows = np.ones(len(has_audio), bool)
    if needs_audio:
        rows &= np.asarray(has_audio, bool)
    if needs_visual:
        rows &= np.asarray(has_visual, bool)
    return rows


def _ordered(conditions: Sequence[str]) -> list[str]:
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; choose from {CONDITIONS}")
    return [c for c in CONDITIONS if c in conditions]  # av, a, v: fullest first


@torch.inference_mode()
def probabilities(model: Model, batch: Batch, conditions: Sequence[str]) -> dict[str, np.ndarray]:
    """condition -> (B, E) float32 sigmoid probabilities, NaN on rows that cannot form it.

    `batch` must already be on the model's device. A modality no row needs is not encoded.
    """
    conditions = _ordered(conditions)
    has_audio = batch.has_audio.cpu().numpy()  # (B,)
    has_visual = batch.has_visual.cpu().numpy()  # (B,)
    rows = {c: can_form(has_audio, has_visual, c) for c in conditions}
    active = [c for c in conditions if rows[c].any()]
    use_audio = any(CONDITION_MODALITIES[c][0] for c in active)
    use_visual = any(CONDITION_MODALITIES[c][1] for c in active)
    audio = model.encode_batch_audio(batch) if use_audio else None
    visual = model.encode_visual(batch.visual, batch.visual_mask) if use_visual else None
    out: dict[str, np.ndarray] = {}
    for condition in conditions:
        probs = np.full((len(batch), model.config.num_labels), np.nan, np.float32)  # (B, E)
        if condition in active:
            needs_audio, needs_visual = CONDITION_MODALITIES[condition]
            logits = model.fuse(audio if needs_audio else None, visual if needs_visual else None)
            probs[rows[condition]] = torch.sigmoid(logits.float()).cpu().numpy()[rows[condition]]
        out[condition] = probs
    return out


def infer(
    model: Model,
    batch: Batch,
    conditions: Sequence[str],
    thresholds: Mapping[str, Sequence[float]],
    labels: Sequence[str],
) -> Inference:
    """Probabilities for the served `conditions`, and tags from the fullest one that ran per row."""
    conditions = _ordered(conditions)
    missing = [c for c in conditions if c not in thresholds]
    if missing:
        raise ValueError(f"no thresholds for served condition(s) {missing}")
    probs = probabilities(model, batch, conditions)
    has_audio = batch.has_audio.cpu().numpy()  # (B,)
    has_visual = batch.has_visual.cpu().numpy()  # (B,)
    size = len(batch)
    ran: list[list[str]] = [[] for _ in range(size)]
    tags: list[list[str]] = [[] for _ in range(size)]
    tags_condition: list[str | None] = [None] * size
    for condition in conditions:  # fullest first: the first that ran on a row decides its tags
        rows = can_form(has_audio, has_visual, condition)  # (B,)
        cut = np.asarray(thresholds[condition], np.float64)  # (E,)
        decided = decide(np.nan_to_num(probs[condition], nan=0.0), cut)  # (B, E)
        for i in np.flatnonzero(rows):
            ran[i].append(condition)
            if tags_condition[i] is None:
                tags_condition[i] = condition
                tags[i] = [labels[e] for e in np.flatnonzero(decided[i])]
    return Inference(probs=probs, tags=tags, tags_condition=tags_condition, ran=ran)
