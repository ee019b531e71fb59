"""Metrics of a trained checkpoint on a split of the clip shards, per input condition.

`evaluate` applies the thresholds saved with the checkpoint (tuned on validation during
training), as a model in use would; `validation_score` re-tunes them on the data given, which is how
training scores a checkpoint, so the registry's gate compares models on equal terms. Both predict
through the shared inference core (`avemo_core.training.predict` -> `avemo_core.inference`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from avemo_core import metrics, training
from avemo_core.checkpoint import Checkpoint
from avemo_core.data import Batch
from avemo_core.metrics import ThresholdConfig
from avemo_core.selection import TRAINED_CONDITIONS, Selection, selection_score


def evaluate(
    checkpoint: Checkpoint, batches: Iterable[Batch], device: torch.device | None = None
) -> dict[str, dict[str, float]]:
    """condition -> metrics (plus `samples`) for every condition the checkpoint serves and some
    labelled sample can form."""
    device = device or torch.device("cpu")
    model = checkpoint.model.to(device)
    results: dict[str, dict[str, float]] = {}
    for condition, (probs, labels) in training.predict(
        model, batches, checkpoint.conditions, device
    ).items():
        if len(probs) == 0:
            continue
        thresholds = np.asarray(checkpoint.thresholds[condition])
        scores = metrics.emotion_metrics(probs, labels, thresholds, checkpoint.labels)
        results[condition] = {**scores, "samples": float(len(probs))}
    return results


def validation_score(checkpoint: Checkpoint, batches: Iterable[Batch], mode: str) -> Selection:
    """The training selection score (`avemo_core.selection`) of `checkpoint` here,
    with thresholds tuned by the rule it was trained with (metadata `threshold_config`)."""
    rule = checkpoint.metadata.get("threshold_config")
    valid_metrics, _ = training.validate(
        checkpoint.model,
        batches,
        TRAINED_CONDITIONS[mode],
        torch.device("cpu"),
        ThresholdConfig.from_dict(rule) if rule else None,
    )
    return selection_score(mode, valid_metrics)
