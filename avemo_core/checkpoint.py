"""Checkpoints without pickle: safetensors weights and a JSON file with the configs that built them.

A checkpoint is a directory:

    model.safetensors   the state dict (safetensors: a JSON header and raw tensor bytes; loading
                        it runs no code, so a checkpoint from elsewhere is safe to open)
    avemo.json          format version, model config, label names, feature config, thresholds per
                        condition, metadata (epoch, metrics, training config, the conditions the
                        model was trained, validated and scored on, ...)

It is written into a temporary sibling directory and renamed into place, so a reader never sees a
half-written checkpoint. There is deliberately no `torch.load` path: nothing here unpickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from avemo_core import __version__
from avemo_core.config import ConfigError
from avemo_core.ensemble import Model, build_model
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS
from avemo_core.model import ModelConfig

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "avemo.json"
# metadata["conditions"]: {"trained": [...], "validated": [...], "scored": [...]} (see `conditions`)
CONDITIONS_KEY = "conditions"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, malformed, of another format version, or does not fit."""


@dataclasses.dataclass
class Checkpoint:
    model: Model
    model_config: ModelConfig
    thresholds: dict[str, list[float]]  # condition -> (E,) thresholds tuned on validation
    labels: list[str]  # emotion names in logit order
    feature_config: dict[str, Any]  # the extractor config the model was trained on
    metadata: dict[str, Any]  # epoch, metrics, co-learning config, data fingerprint, ...

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions this model labels with (`served_conditions`)."""
        return served_conditions(self.metadata, self.thresholds)


def served_conditions(metadata: dict[str, Any], thresholds: dict[str, Any]) -> tuple[str, ...]:
    """Validated conditions (thresholds tuned on validation) whose every modality some trained
    condition fed: a branch the training data never reached is not served, whatever its
    thresholds. A checkpoint that predates this record serves its thresholds' conditions."""
    recorded = metadata.get(CONDITIONS_KEY)
    if not isinstance(recorded, dict):
        return tuple(c for c in CONDITIONS if c in thresholds)
    trained = recorded.get("trained", [])
    fed = {i for c in trained for i, used in enumerate(CONDITION_MODALITIES[c]) if used}
    return tuple(
        c
        for c in CONDITIONS
        if c in recorded.get("validated", [])
        and c in thresholds
        and all(i in fed for i, used in enumerate(CONDITION_MODALITIES[c]) if used)
    )


def _plain(value: Any) -> Any:
    """Strict-JSON form: numpy values as Python ones, NaN/inf (undefined metrics) as null."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_fields(labels: Any, thresholds: Any, num_labels: int) -> None:
    """Label names and thresholds must fit the model's logits (on save and on load)."""
    if not (
        isinstance(labels, list)
        and all(isinstance(name, str) and name for name in labels)
        and len(set(labels)) == len(labels) == num_labels
    ):
        raise CheckpointError(f"labels must be {num_labels} distinct names, got {labels!r}")
    if not isinstance(thresholds, dict) or not set(thresholds) <= set(CONDITIONS):
        raise CheckpointError(f"thresholds must map conditions in {CONDITIONS} to lists")
    for condition, values in thresholds.items():
        if not (
            isinstance(values, list)
            and len(values) == num_labels
            and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        ):
            raise CheckpointError(f"thresholds[{condition!r}] must be {num_labels} finite numbers")


def _check_conditions(metadata: Any, thresholds: dict[str, Any]) -> None:
    """metadata["conditions"], when present: lists of known conditions; validated ones tuned."""
    recorded = metadata.get(CONDITIONS_KEY) if isinstance(metadata, dict) else None
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(
        isinstance(v, list) and set(v) <= set(CONDITIONS) for v in recorded.values()
    ):
        raise CheckpointError(f"metadata.conditions must map names to lists of {CONDITIONS}")
    untuned = sorted(set(recorded.get("validated", [])) - set(thresholds))
    if untuned:
        raise CheckpointError(f"validated condition(s) {untuned} have no thresholds")


def save_checkpoint(directory: str | Path, checkpoint: Checkpoint) -> Path:
    """Write `checkpoint` to `directory` atomically, replacing an older one; return the path."""
    target = Path(directory)
    num_labels = checkpoint.model_config.num_labels
    thresholds = {c: [float(v) for v in values] for c, values in checkpoint.thresholds.items()}
    labels = list(checkpoint.labels)
    _check_fields(labels, thresholds, num_labels)
    _check_conditions(checkpoint.metadata, thresholds)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
        save_model(checkpoint.model, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {
            "format_version": FORMAT_VERSION,
            "code_version": __version__,
            "model_config": checkpoint.model_config.to_dict(),
            "labels": labels,
            "feature_config": checkpoint.feature_config,
            "thresholds": thresholds,
            "metadata": checkpoint.metadata,
        }
        text = json.dumps(_plain(meta), indent=2, sort_keys=True, allow_nan=False)
        (staging / META_FILE).write_text(text + "\n")
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _replace_dir(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing target is moved aside first and removed after."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / "checkpoint")
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old / "checkpoint", target)  # put the old checkpoint back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _read_meta(path: Path) -> dict[str, Any]:
    """The parsed, version-checked avemo.json of a checkpoint directory."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: not an avemo checkpoint") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}, this code reads {FORMAT_VERSION}"
        )
    missing = {"model_config", "labels", "thresholds"} - set(meta)
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)}")
    return meta


def load_checkpoint(directory: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model from avemo.json and load its safetensors weights strictly, in eval mode."""
    root = Path(directory)
    meta = _read_meta(root / META_FILE)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{root / META_FILE}: bad model_config: {err}") from None
    _check_fields(meta["labels"], meta["thresholds"], config.num_labels)
    _check_conditions(meta.get("metadata", {}), meta["thresholds"])
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    model = build_model(config)
    try:
        load_model(model, weights, strict=True)
    except SafetensorError as err:
        raise CheckpointError(f"{weights} is not a safetensors file: {err}") from None
    except RuntimeError as err:
        raise CheckpointError(f"{weights} does not fit the model config: {err}") from None
    return Checkpoint(
        model=model.to(map_location).eval(),
        model_config=config,
        thresholds=meta["thresholds"],
        labels=meta["labels"],
        feature_config=meta.get("feature_config", {}),
        metadata=meta.get("metadata", {}),
    )
