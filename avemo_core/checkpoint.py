"""Checkpoints without pickle: safetensors weights plus a JSON file with every config that built them.

INTERFACE STUB, owned by the metrics/checkpoint helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from avemo_core.model import CrossModalTransformer, ModelConfig


@dataclasses.dataclass
class Checkpoint:
    model: CrossModalTransformer
    model_config: ModelConfig
    thresholds: dict[str, list[float]]  # condition -> (E,) thresholds tuned on validation
    labels: list[str]  # emotion names in logit order
    feature_config: dict[str, Any]  # the extractor config the model was trained on
    metadata: dict[str, Any]  # epoch, metrics, co-learning config, data fingerprint, ...


def save_checkpoint(directory: str | Path, checkpoint: Checkpoint) -> Path:
    raise NotImplementedError


def load_checkpoint(directory: str | Path, map_location: str = "cpu") -> Checkpoint:
    raise NotImplementedError
