"""Shared pieces of the labelling tests: a tiny checkpoint with known thresholds, and the checks
every label shard must pass whatever its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from avemo_core.checkpoint import CONDITIONS_KEY, Checkpoint, save_checkpoint
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS, EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.schema import prob_column
from pipelines.extract.run import ExtractConfig

# Different per condition, so a tag decided with the wrong condition's thresholds shows.
THRESHOLDS = {
    "av": [0.50, 0.45, 0.55, 0.40, 0.60, 0.50],
    "a": [0.40, 0.50, 0.45, 0.55, 0.35, 0.60],
    "v": [0.60, 0.40, 0.50, 0.45, 0.55, 0.35],
}
# One-second windows, so a few seconds of media make several clips.
WINDOW_S = 1.0


def write_checkpoint(
    directory: Path,
    seed: int = 0,
    conditions: dict[str, list[str]] | None = None,
    config: ModelConfig | None = None,
) -> Path:
    """A tiny random model whose feature config matches extraction with 1 s windows.

    `conditions` ({"trained": [...], "validated": [...]}) records what it was trained and
    validated on, and keeps thresholds for the validated ones only; without it the checkpoint
    is one from before that record (it serves every condition it has thresholds for). `config`:
    another model than `tiny`.
    """
    torch.manual_seed(seed)
    config = config or ModelConfig.named("tiny")
    features = ExtractConfig(input_uri="-", output_uri="-", window_s=WINDOW_S).extractor_config()
    thresholds = THRESHOLDS
    metadata: dict = {}
    if conditions is not None:
        thresholds = {c: t for c, t in THRESHOLDS.items() if c in conditions["validated"]}
        metadata = {CONDITIONS_KEY: conditions}
    checkpoint = Checkpoint(
        CrossModalTransformer(config).eval(), config, thresholds, list(EMOTIONS), features, metadata
    )
    return save_checkpoint(directory, checkpoint)


def probs(labels: pa.Table, condition: str) -> np.ndarray:
    """(N, E) probabilities of one condition, NaN where null."""
    columns = [
        labels.column(prob_column(condition, e)).to_numpy(zero_copy_only=False) for e in EMOTIONS
    ]
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=1)


def check_label_rows(labels: pa.Table, served: tuple[str, ...] = CONDITIONS) -> None:
    """Conditions present exactly where the modalities allow and the model serves them (null
    elsewhere), `conditions` naming them, tags from the fullest one (none: no tags, null)."""
    modalities = labels.column("modalities").to_pylist()
    p = {c: probs(labels, c) for c in CONDITIONS}
    for i, modality in enumerate(modalities):
        has = {
            "audio": modality in ("audio+visual", "audio"),
            "visual": modality in ("audio+visual", "visual"),
        }
        ran = [
            c
            for c in CONDITIONS
            if c in served
            and (has["audio"] or not CONDITION_MODALITIES[c][0])
            and (has["visual"] or not CONDITION_MODALITIES[c][1])
        ]
        for c in CONDITIONS:
            assert np.isfinite(p[c][i]).all() == (c in ran), (i, modality, c)
            assert np.isnan(p[c][i]).all() == (c not in ran), (i, modality, c)
        assert labels.column("conditions")[i].as_py() == ran
        fullest = ran[0] if ran else None
        assert labels.column("tags_condition")[i].as_py() == fullest
        expected = (
            [e for k, e in enumerate(EMOTIONS) if p[fullest][i, k] >= THRESHOLDS[fullest][k]]
            if fullest
            else []
        )
        assert labels.column("tags")[i].as_py() == expected
