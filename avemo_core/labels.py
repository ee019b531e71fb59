"""The label set and the input conditions, in their fixed order."""

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


def is_present(intensity: float) -> bool:
    """CMU-MOSEI convention: an emotion is present when its intensity is > 0."""
    return intensity > 0.0
