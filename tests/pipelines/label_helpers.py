"""Shared pieces of the labelling tests: a tiny checkpoint with known thresholds, and the checks
every label shard must pass whatever its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from avemo_core.checkpoint import Checkpoint, save_checkpoint
from avemo_core.labels import EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.schema import prob_column
from pipelines.extract import ExtractConfig

# Different per condition, so a tag decided with the wrong condition's thresholds shows.
THRESHOLDS = {
    "av": [0.50, 0.45, 0.55, 0.40, 0.60, 0.50],
    "a": [0.40, 0.50, 0.45, 0.55, 0.35, 0.60],
    "v": [0.60, 0.40, 0.50, 0.45, 0.55, 0.35],
}
# One-second windows, so a few seconds of media make several clips.
WINDOW_S = 1.0


def write_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A tiny random model whose feature config matches extraction with 1 s windows."""
    torch.manual_seed(seed)
    config = ModelConfig.named("tiny")
    features = ExtractConfig(input_uri="-", output_uri="-", window_s=WINDOW_S).extractor_config()
    checkpoint = Checkpoint(
        CrossModalTransformer(config).eval(), config, THRESHOLDS, list(EMOTIONS), features, {}
    )
    return save_checkpoint(directory, checkpoint)


def probs(labels: pa.Table, condition: str) -> np.ndarray:
    """(N, E) probabilities of one condition, NaN where null."""
    columns = [
        labels.column(prob_column(condition, e)).to_numpy(zero_copy_only=False) for e in EMOTIONS
    ]
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=1)


def check_label_rows(labels: pa.Table) -> None:
    """Conditions present exactly where the modalities allow, tags from the fullest condition."""
    modalities = labels.column("modalities").to_pylist()
    p = {c: probs(labels, c) for c in ("av", "a", "v")}
    for i, modality in enumerate(modalities):
        has_audio, has_visual = (
            modality in ("audio+visual", "audio"),
            modality in ("audio+visual", "visual"),
        )
        assert np.isfinite(p["av"][i]).all() == (has_audio and has_visual), (i, modality)
        assert np.isnan(p["av"][i]).all() == (not (has_audio and has_visual)), (i, modality)
        assert np.isfinite(p["a"][i]).all() == has_audio and np.isnan(p["a"][i]).all() == (
            not has_audio
        )
        assert np.isfinite(p["v"][i]).all() == has_visual and np.isnan(p["v"][i]).all() == (
            not has_visual
        )
        fullest = "av" if has_audio and has_visual else "a" if has_audio else "v"
        assert labels.column("tags_condition")[i].as_py() == fullest
        expected = [e for k, e in enumerate(EMOTIONS) if p[fullest][i, k] >= THRESHOLDS[fullest][k]]
        assert labels.column("tags")[i].as_py() == expected
