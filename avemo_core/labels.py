"""The label set, the input conditions and the data splits, each declared once, in order."""

from __future__ import annotations

# CMU-MOSEI's six emotions; the order is the column order of every logit, label and metric array.
EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "fear", "disgust", "surprise")

# Input conditions one set of weights serves: audio+visual, audio-only, visual-only.
CONDITIONS: tuple[str, ...] = ("av", "a", "v")

# Which modalities each condition feeds to the model.
CONDITION_MODALITIES: dict[str, tuple[bool, bool]] = {
    "av": (True, True),
    "a": (True, False),
    "v": (False, True),
}

# Data splits of a manifest and of clip shards; a clip without one is never used for training.
SPLITS: tuple[str, ...] = ("train", "valid", "test")


def is_present(intensity: float) -> bool:
    """CMU-MOSEI convention: an emotion is present when its intensity is > 0."""
    return intensity > 0.0
