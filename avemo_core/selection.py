"""Which epoch is best: the validation score a run selects checkpoints by.

`val_score` is the mean validation macro-F1 over the conditions the mode trains (av, a and v for
colearn; av for av; a for audio; v for visual) that the validation data can score: a colearn run
on audio-only data is scored on a alone, not on a with zeros for av and v. Training (plain or Ray),
evaluation and the registry's champion gate all score through here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

SCORE_KEY = "val_score"
# The conditions each mode trains, whose validation macro-F1 is averaged into `val_score`.
TRAINED_CONDITIONS = {"colearn": ("av", "a", "v"), "av": ("av",), "audio": ("a",), "visual": ("v",)}


@dataclasses.dataclass(frozen=True)
class Selection:
    score: float  # mean validation macro-F1 over `conditions` (NaN when there are none)
    conditions: tuple[str, ...]  # the trained conditions the validation data could score


def selection_score(mode: str, valid_metrics: Mapping[str, float]) -> Selection:
    """Mean validation macro-F1 over the conditions `mode` trains that these data could score.

    A condition the validation data cannot form (no `<c>/f1`) or cannot score (undefined F1:
    no emotion with both positives and negatives) is left out, never counted as 0.
    """
    scored = tuple(
        c for c in TRAINED_CONDITIONS[mode] if math.isfinite(valid_metrics.get(f"{c}/f1", math.nan))
    )
    values = [valid_metrics[f"{c}/f1"] for c in scored]
    return Selection(float(np.mean(values)) if values else math.nan, scored)
